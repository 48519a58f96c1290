//! `hush-launch <secrets-dir> -- <command> [args...]`: see the library. On success this process
//! becomes the app (execve); on failure it prints one line on stderr and exits 1, so the kubelet
//! restarts the container.

fn main() {
    let err = hush_launch::launch(std::env::args_os().collect());
    eprintln!("hush-launch: {err}");
    std::process::exit(1);
}
