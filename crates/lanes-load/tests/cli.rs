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
fn influx_v2_needs_org_bucket_and_token_together() {
    let url = "http://127.0.0.1:8086";
    for partial in [
        &["--influx", url, "--influx-org", "o"][..],
        &["--influx", url, "--influx-org", "o", "--influx-bucket", "b"],
        &[
            "--influx",
            url,
            "--influx-bucket",
            "b",
            "--influx-token",
            "t",
        ],
        &["--influx-org", "o"],
    ] {
        let mut args = partial.to_vec();
        args.push("echo");
        let (code, stderr) = lanes_load(&args);
        assert_eq!(code, 2, "{partial:?}: {stderr}");
        assert!(stderr.contains("--influx-"), "{partial:?}: {stderr}");
    }
    // v1 and v2 at once.
    let (code, stderr) = lanes_load(&[
        "--influx",
        url,
        "--influx-db",
        "lanes",
        "--influx-org",
        "o",
        "--influx-bucket",
        "b",
        "--influx-token",
        "t",
        "echo",
    ]);
    assert_eq!(code, 2, "{stderr}");
    // No TLS: plain HTTP only.
    let (code, stderr) = lanes_load(&["--influx", "https://127.0.0.1:8086", "echo"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--influx"), "{stderr}");
}

#[test]
fn a_busy_prometheus_port_exits_1_with_a_message() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, stderr) = lanes_load(&["--prometheus-port", &port, "echo"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/metrics"), "{stderr}");
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
