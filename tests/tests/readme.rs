//! The README is part of the product: its "Annotations" table must be exactly what the parser
//! accepts (`hush_config::annotations::reference_table_markdown()`), and the two commands a
//! newcomer runs must exist. `HUSH_BLESS=1 cargo test -p hush-tests --test readme` rewrites the
//! table from the parser.

use hush_tests::env::repo_root;

const BEGIN: &str = "<!-- annotations:begin (generated from the parser; HUSH_BLESS=1 cargo test -p hush-tests --test readme) -->";
const END: &str = "<!-- annotations:end -->";

#[test]
fn readme_annotation_table_matches_the_parser() {
    let path = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let start = readme
        .find(BEGIN)
        .unwrap_or_else(|| panic!("README.md lacks the marker {BEGIN}"));
    let body_start = start + BEGIN.len();
    let end = body_start
        + readme[body_start..]
            .find(END)
            .unwrap_or_else(|| panic!("README.md lacks the marker {END}"));
    let table = hush_config::annotations::reference_table_markdown();
    let want = format!("\n{}\n", table.trim_end());
    if std::env::var("HUSH_BLESS").is_ok_and(|v| v == "1") {
        let new = format!("{}{}{}", &readme[..body_start], want, &readme[end..]);
        std::fs::write(&path, new).expect("write README.md");
        return;
    }
    assert_eq!(
        &readme[body_start..end],
        want,
        "the README's annotation table differs from the parser; run HUSH_BLESS=1 cargo test -p hush-tests --test readme"
    );
}

#[test]
fn readme_gives_the_two_commands_and_they_exist() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for cmd in ["scripts/demo", "scripts/test"] {
        assert!(readme.contains(cmd), "README.md must give {cmd}");
        let meta = std::fs::metadata(root.join(cmd)).unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
            "{cmd} must be executable"
        );
    }
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    assert!(ci.contains("scripts/test"), ".ci/run must run scripts/test");
}
