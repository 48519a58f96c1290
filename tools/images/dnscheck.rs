//! Resolves each name given on the command line through std (getaddrinfo, the same path hyper's
//! GaiResolver takes in the Hush binaries) and prints the addresses. `scripts/images --check-dns`
//! builds it with the images' static flags and runs it in an empty root (no libc.so, no NSS
//! modules) to show that a static glibc binary still resolves names from /etc/hosts.
use std::net::ToSocketAddrs;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut ok = true;
    for name in std::env::args().skip(1) {
        match (name.as_str(), 0u16).to_socket_addrs() {
            Ok(addrs) => {
                let list: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                println!("{name}: {}", list.join(" "));
            }
            Err(e) => {
                println!("{name}: error: {e}");
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
