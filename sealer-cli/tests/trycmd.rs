//! CLI golden tests (trycmd): every command's exact stdout, stderr and exit status, with fixed
//! identities and sealed fixtures from `testdata/`. age output is random, so cases that seal
//! elide the ciphertext lines (`...`, `[..]`) and assert the structure around them.
//! Update the expected files with `TRYCMD=overwrite cargo test -p hush-sealer --test trycmd`.

#![allow(clippy::unwrap_used)]

#[test]
fn cli_golden() {
    trycmd::TestCases::new()
        .env("HUSH_LOG", "warn")
        .case("tests/cmd/*.toml");
}
