//! Reaching etcd as etcdctl does: over TLS with client certificates (`--cacert`, `--cert`,
//! `--key`, or `QROUTER_ETCD_CACERT/CERT/KEY`; `etcds://`), with etcd's user/password auth
//! (`--user USER[:PASSWORD]`), and through several endpoints of which the first are down.
//! etcd runs in the test's sandbox, on its loopback.

mod common;
mod etcd;

use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::*;
use etcd::EtcdServer;

fn at(url: &str, args: &[&str]) -> Command {
    let mut cmd = command(args);
    cmd.env("QROUTER_STORE", url);
    cmd
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Kill (by pid) the agent a test started, pass or fail.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tls_with_client_certificates_and_a_user() {
    sandboxed(|| {
        let mut server = EtcdServer::start_tls("127.0.0.1:23794");
        server.enable_auth("s3cret");
        let url = server.url();
        assert!(url.starts_with("etcds://"), "{url}");
        let path = |p: &Option<std::path::PathBuf>| p.clone().unwrap().display().to_string();
        let (ca, cert, key) = (
            path(&server.access.cacert),
            path(&server.access.cert),
            path(&server.access.key),
        );
        // As etcdctl's options...
        let with_options = |args: &[&str]| {
            let all = [
                &["--cacert", &ca, "--cert", &cert, "--key", &key][..],
                &["--user", "root:s3cret"],
                args,
            ]
            .concat();
            at(&url, &all).output().unwrap()
        };
        succeeded(
            &["network", "create"],
            with_options(&["network", "create", "n1"]),
        );
        // ... or its environment, the password apart.
        let with_env = |args: &[&str]| {
            at(&url, args)
                .env("QROUTER_ETCD_CACERT", &ca)
                .env("QROUTER_ETCD_CERT", &cert)
                .env("QROUTER_ETCD_KEY", &key)
                .env("QROUTER_ETCD_USER", "root")
                .env("QROUTER_ETCD_PASSWORD", "s3cret")
                .output()
                .unwrap()
        };
        let names = succeeded(
            &["network", "list"],
            with_env(&["network", "list", "-f", "value", "-c", "Name"]),
        );
        assert_eq!(names, "n1\n");
        // The object is in etcd, read back over TLS as root.
        let (_, kvs) = server
            .client()
            .range_prefix("/qrouter/state/network/")
            .unwrap();
        assert_eq!(kvs.len(), 1);

        // Without a client certificate, etcd refuses the connection: named, with the reason.
        let out = at(
            &url,
            &["--cacert", &ca, "--user", "root:s3cret", "network", "list"],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", err(&out));
        let e = err(&out);
        assert!(
            e.contains("https://127.0.0.1:23794") && e.to_lowercase().contains("certificate"),
            "{e}"
        );
        // A server certificate signed by no CA it was given is refused too.
        let out = at(
            &url,
            &[
                "--cert",
                &cert,
                "--key",
                &key,
                "--user",
                "root:s3cret",
                "network",
                "list",
            ],
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", err(&out));
        assert!(
            err(&out).to_lowercase().contains("certificate"),
            "{}",
            err(&out)
        );
        // A certificate without its key is a usage error.
        let out = at(&url, &["--cacert", &ca, "--cert", &cert, "network", "list"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", err(&out));

        // A wrong password, no user, a user whose password nobody gave (no terminal).
        let certs = ["--cacert", ca.as_str(), "--cert", &cert, "--key", &key];
        let out = at(
            &url,
            &[&certs[..], &["--user", "root:wrong", "network", "list"]].concat(),
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(err(&out).contains("authentication failed"), "{}", err(&out));
        let out = at(&url, &[&certs[..], &["network", "list"]].concat())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(err(&out).contains("--user"), "{}", err(&out));
        let out = at(
            &url,
            &[&certs[..], &["--user", "root", "network", "list"]].concat(),
        )
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(err(&out).contains("no password"), "{}", err(&out));

        // The agent takes the same options: it registers, and keeps its lease, over TLS.
        sh_ok("ip link add u0 type bridge && ip addr add 10.9.0.1/24 dev u0 && ip link set u0 up");
        let agent = at(
            &url,
            &[
                &certs[..],
                &["--user", "root:s3cret", "agent", "--host", "h1"],
            ]
            .concat(),
        )
        .args(["--local-ip", "10.9.0.1", "--role", "compute"])
        .spawn()
        .unwrap();
        let _agent = Agent(agent);
        let start = Instant::now();
        loop {
            let alive = with_env(&["host", "list", "-f", "value", "-c", "Name", "-c", "Alive"]);
            if String::from_utf8_lossy(&alive.stdout).trim() == "h1 true" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{}", err(&alive));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

#[test]
fn the_next_endpoint_when_the_first_are_down() {
    sandboxed(|| {
        let server = EtcdServer::start();
        // One endpoint whose packets are dropped (a host that died: the connection attempt
        // times out), one that refuses, then etcd.
        sh_ok("iptables -A INPUT -p tcp --dport 23798 -j DROP");
        let url = format!("etcd://127.0.0.1:23798,127.0.0.1:23799,{}", server.addr);
        for args in [
            &["network", "create", "n1"][..],
            &["network", "create", "n2"],
        ] {
            let start = Instant::now();
            succeeded(args, at(&url, args).output().unwrap());
            // The dropped one is given up on after its short connect timeout (1 s).
            assert!(start.elapsed() < Duration::from_secs(10));
        }
        let out = at(&url, &["network", "list", "-f", "value", "-c", "Name"])
            .output()
            .unwrap();
        assert_eq!(succeeded(&["network", "list"], out), "n1\nn2\n");
    });
}
