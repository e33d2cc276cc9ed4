//! An etcd server for a test: started in the test's sandbox (or in a named namespace), with
//! its data in the sandbox's /run, stopped (killed by pid) when dropped, also when the test
//! fails, and killed by the kernel if the test process dies first (PR_SET_PDEATHSIG).
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdServer {
    child: Option<Child>,
    pub dir: String,
    pub addr: String,
    netns: Option<String>,
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
        };
        server.restart();
        server
    }

    pub fn start() -> EtcdServer {
        EtcdServer::start_at("127.0.0.1:23790", None)
    }

    /// `etcd://ADDR`
    pub fn url(&self) -> String {
        format!("etcd://{}", self.addr)
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
        cmd.args(["--data-dir", &self.dir, "--name", "test"])
            .arg(format!("--listen-client-urls=http://{}", self.addr))
            .arg(format!("--advertise-client-urls=http://{}", self.addr))
            .arg(format!("--listen-peer-urls=http://{ip}:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://{ip}:{peer_port}"
            ))
            .arg(format!("--initial-cluster=test=http://{ip}:{peer_port}"))
            // A batch --atomic of many objects is one transaction.
            .args(["--max-txn-ops", "100000", "--max-request-bytes", "33554432"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(format!("{}.log", self.dir)).unwrap());
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
        let spec = self.addr.clone();
        let start = Instant::now();
        loop {
            let up = qrouter::store::etcd::client::Client::new(&spec)
                .and_then(|mut c| c.get("/health-probe"))
                .is_ok();
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
