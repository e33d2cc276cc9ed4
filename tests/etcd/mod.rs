//! An etcd server for a test: started in the test's sandbox (or in a named namespace), with
//! its data in the sandbox's /run, stopped (killed by pid) when dropped, also when the test
//! fails, and killed by the kernel if the test process dies first (PR_SET_PDEATHSIG). Or
//! over TLS, asking every client for a certificate, with certificates made for the test by
//! the `openssl` command (`start_tls`).
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qrouter::ops::EtcdAccess;
use qrouter::store::etcd::client::Client;

pub struct EtcdServer {
    child: Option<Child>,
    pub dir: String,
    pub addr: String,
    netns: Option<String>,
    /// Over TLS: where its certificates are (`ca.pem`, `server.pem`, `client.pem` and keys).
    pub tls: Option<String>,
    /// What a client needs to reach it: the CA, a client certificate, a user once auth is on.
    pub access: EtcdAccess,
}

impl EtcdServer {
    /// etcd listening on `addr` (`IP:PORT`), in the namespace `netns` when given.
    pub fn start_at(addr: &str, netns: Option<&str>) -> EtcdServer {
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let dir = format!("/run/etcd-test-{port}");
        let mut server = EtcdServer {
            child: None,
            dir,
            addr: addr.to_string(),
            netns: netns.map(str::to_string),
            tls: None,
            access: EtcdAccess::default(),
        };
        server.restart();
        server
    }

    /// etcd on `addr` over TLS, with client-certificate auth: a client without a certificate
    /// signed by the test's CA is refused.
    pub fn start_tls(addr: &str) -> EtcdServer {
        let port = addr.rsplit(':').next().unwrap();
        let certs = format!("/run/etcd-test-{port}-certs");
        make_certificates(&certs, addr.rsplit_once(':').unwrap().0);
        let mut server = EtcdServer {
            child: None,
            dir: format!("/run/etcd-test-{port}"),
            addr: addr.to_string(),
            netns: None,
            access: EtcdAccess {
                cacert: Some(format!("{certs}/ca.pem").into()),
                cert: Some(format!("{certs}/client.pem").into()),
                key: Some(format!("{certs}/client.key").into()),
                ..EtcdAccess::default()
            },
            tls: Some(certs),
        };
        server.restart();
        server
    }

    /// A client of it, with the access a test's client has.
    pub fn client(&self) -> Client {
        Client::with_access(&self.endpoint(), &self.access).unwrap()
    }

    /// The endpoint as the client takes it.
    pub fn endpoint(&self) -> String {
        match self.tls {
            Some(_) => format!("https://{}", self.addr),
            None => self.addr.clone(),
        }
    }

    /// Turn on etcd's auth, with `root` as the one user, its password `password`; from now
    /// on `access` names it.
    pub fn enable_auth(&mut self, password: &str) {
        let mut c = self.client();
        let calls = [
            ("/v3/auth/role/add", serde_json::json!({"name": "root"})),
            (
                "/v3/auth/user/add",
                serde_json::json!({"name": "root", "password": password}),
            ),
            (
                "/v3/auth/user/grant",
                serde_json::json!({"user": "root", "role": "root"}),
            ),
            ("/v3/auth/enable", serde_json::json!({})),
        ];
        for (path, body) in calls {
            c.call(path, &body).unwrap();
        }
        self.access.user = Some("root".into());
        self.access.password = Some(password.into());
    }

    pub fn start() -> EtcdServer {
        EtcdServer::start_at("127.0.0.1:23790", None)
    }

    /// `etcd://ADDR`, or `etcds://ADDR` over TLS.
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("etcds://{}", self.addr),
            None => format!("etcd://{}", self.addr),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Start it again (on the same data) after `stop`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd already runs");
        let ip = self.addr.rsplit_once(':').unwrap().0;
        let peer_port: u16 = self
            .addr
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap()
            + 1;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "etcd"]);
                c
            }
            None => Command::new("etcd"),
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        cmd.args(["--data-dir", &self.dir, "--name", "test"])
            .arg(format!("--listen-client-urls={scheme}://{}", self.addr))
            .arg(format!("--advertise-client-urls={scheme}://{}", self.addr))
            .arg(format!("--listen-peer-urls=http://{ip}:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://{ip}:{peer_port}"
            ))
            .arg(format!("--initial-cluster=test=http://{ip}:{peer_port}"))
            // A batch --atomic of many objects is one transaction.
            .args(["--max-txn-ops", "100000", "--max-request-bytes", "33554432"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(format!("{}.log", self.dir)).unwrap());
        if let Some(certs) = &self.tls {
            cmd.arg(format!("--cert-file={certs}/server.pem"))
                .arg(format!("--key-file={certs}/server.key"))
                .arg(format!("--trusted-ca-file={certs}/ca.pem"))
                .arg("--client-cert-auth");
        }
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(
            cmd.spawn()
                .expect("etcd runs (apt-get install etcd-server)"),
        );
        let start = Instant::now();
        loop {
            let up = self.client().get("/health-probe").is_ok();
            if up {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "etcd did not start: {}",
                std::fs::read_to_string(format!("{}.log", self.dir)).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill it (SIGKILL, by pid) and reap it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA, a certificate for etcd at `ip` (for serving, and as the client its own gateway is),
/// and a client certificate, in `dir`, by the `openssl` command (elliptic-curve keys: made
/// in milliseconds).
fn make_certificates(dir: &str, ip: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509", "-days", "2", "-subj", "/CN=qrouter-test-ca"][..],
            &key,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    for (name, usage) in [
        (
            "server",
            format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth,clientAuth\n"),
        ),
        ("client", "extendedKeyUsage=clientAuth\n".to_string()),
    ] {
        let (keyfile, csr, ext, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
            format!("{name}.pem"),
        );
        // No CommonName: etcd's gateway refuses a client's that has one once auth is on.
        openssl(
            &[
                &["req", "-subj", &format!("/O={name}")][..],
                &key,
                &["-keyout", &keyfile, "-out", &csr],
            ]
            .concat(),
        );
        std::fs::write(format!("{dir}/{ext}"), usage).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ]);
    }
}
