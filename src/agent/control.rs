//! The agent's side of etcd: every call runs on a thread of the runtime's blocking pool, so
//! the agent's loop (an `async fn`, with the kernel's netlink connections on the same
//! runtime) never waits on a socket itself. While etcd cannot be reached, nothing here
//! touches the host: the calls fail, the loop keeps the data plane exactly as it is and
//! tries again with a backoff, and the change of state is logged once each way (`Reach`),
//! however many threads (the loop, the watch, the lease) notice it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::etcd::Etcd;

/// Whether etcd answers, as the agent's threads last found it: each change is logged once.
#[derive(Clone)]
pub struct Reach(Arc<Mutex<ReachState>>);

struct ReachState {
    endpoints: String,
    /// Since when etcd has not answered; None while it does.
    lost: Option<Instant>,
}

impl Reach {
    pub fn new(endpoints: &str) -> Reach {
        Reach(Arc::new(Mutex::new(ReachState {
            endpoints: endpoints.to_string(),
            lost: None,
        })))
    }

    /// A call to etcd failed.
    pub fn failed(&self, what: &str, error: &anyhow::Error) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.lost.is_none() {
            s.lost = Some(Instant::now());
            log::warn!(
                "etcd at {} does not answer ({what}: {error:#}): this host's data plane stays \
                 exactly as it is; retrying",
                s.endpoints
            );
        }
    }

    /// A call to etcd succeeded.
    pub fn answered(&self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lost) = s.lost.take() {
            log::info!(
                "etcd at {} answers again after {} s: catching up",
                s.endpoints,
                lost.elapsed().as_secs()
            );
        }
    }
}

/// The agent's store, used off the runtime.
pub struct Control {
    store: Arc<Mutex<Etcd>>,
    pub reach: Reach,
}

impl Control {
    pub fn new(store: Etcd, reach: Reach) -> Control {
        Control {
            store: Arc::new(Mutex::new(store)),
            reach,
        }
    }

    /// Run `f` on the store on a blocking thread, and note whether etcd answered.
    pub async fn call<R: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Etcd) -> anyhow::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut store)
        })
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("{what}: {e}")));
        match &result {
            Ok(_) => self.reach.answered(),
            Err(e) => self.reach.failed(what, e),
        }
        result
    }

    /// `call` until it succeeds, waiting longer after each failure (up to `MAX_BACKOFF`).
    pub async fn retry<R: Send + 'static>(
        &self,
        what: &'static str,
        f: impl Fn(&mut Etcd) -> anyhow::Result<R> + Send + Sync + Clone + 'static,
    ) -> R {
        let mut pause = FIRST_BACKOFF;
        loop {
            if let Ok(r) = self.call(what, f.clone()).await {
                return r;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_BACKOFF);
        }
    }
}

/// The first pause after etcd did not answer, and the longest: an agent whose etcd comes
/// back takes its lease again within a second, before the lease of a predecessor killed
/// meanwhile (which etcd extends by its TTL as it starts) ends, and one whose etcd stays
/// away costs a refused connection a second.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
