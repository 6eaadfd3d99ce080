//! The command line: bad arguments and refused connections give a message and a non-zero exit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::Command;

fn lanes_load(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lanes-load"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let (code, stderr) = lanes_load(&["echo", "--depth", "0"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--depth"), "{stderr}");
    let (code, stderr) = lanes_load(&["--addr", "nowhere", "echo"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--addr"), "{stderr}");
    // The server sets the rate when it publishes.
    let (code, stderr) = lanes_load(&["fanout", "--source", "server", "--rate", "10"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--rate"), "{stderr}");
}

#[test]
fn a_refused_connection_exits_1_with_a_message() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    for mode in ["echo", "connect", "idle", "fanout"] {
        let (code, stderr) =
            lanes_load(&["--addr", &addr, "--duration", "0.2", "--warmup", "0", mode]);
        assert_eq!(code, 1, "{mode}: {stderr}");
        assert!(stderr.contains("cannot connect"), "{mode}: {stderr}");
    }
}
