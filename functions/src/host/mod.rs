//! The function host behind `slokit serve`: HTTP/1.1 on std sockets, a
//! fixed pool of worker threads, and the threading contract the scheduler
//! relies on (DESIGN.md, "The function host"): **the worker that `recv`s a
//! request runs the function and `send`s the reply**, so a black-box
//! monitor (the seed's kprobes, slokit's `tp_btf` programs) sees arrival and
//! completion on the thread that must be scheduled.
//!
//! Threads:
//! - `host-acceptor` accepts connections and hands them to the poller;
//! - `host-poller` holds every connection no worker serves (epoll) and
//!   queues one for the workers once its request is in the socket buffer,
//!   looking at it without consuming it (see `poller.rs`), so idle and
//!   slow clients hold no worker;
//! - `fn-worker-<i>`, created eagerly, each reads one request, runs it,
//!   writes the reply and gives the connection back (see `worker.rs`).
//!
//! With `worker_cpus` the workers are pinned to those CPUs and the acceptor
//! and poller to the remaining ones, so a `SCHED_FIFO` policy on busy
//! workers cannot starve the host's own threads.

pub mod cancel;
mod http;
mod inflight;
mod notifier;
mod poller;
mod signals;
mod sock;
mod worker;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::catalogue::Catalogue;

pub use signals::{signal_name, ShutdownSignals};

use http::{Conn, MAX_HEAD};
use inflight::InFlight;
use notifier::Notifier;
use poller::{Back, Handoff};
use slokit_sys::cpu::{current_affinity, format_cpu_list, pin_current_thread};
use slokit_sys::poll::{Epoll, EventFd};
use slokit_sys::sched::gettid;

/// Default limit on a request body: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Default time a request may take to arrive, from its first byte.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a reply may wait for a client that does not read it.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a graceful shutdown waits for requests in flight.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit on request bytes in flight: 256 MiB.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 256 * 1024 * 1024;
/// Largest part of a request the poller waits to see buffered before a
/// worker takes it (see `poller.rs`); the socket receive buffer is raised
/// to hold it.
pub const MAX_PEEK_BYTES: usize = 256 * 1024;
/// Default listen backlog (the kernel caps it at `net.core.somaxconn`).
pub const DEFAULT_BACKLOG: i32 = 4096;
/// Default number of workers when no CPU list says otherwise.
pub const DEFAULT_WORKERS: usize = 4;
/// Prefix of worker thread names; the scheduler agent finds workers by it
/// in `/proc/<pid>/task/<tid>/comm`.
pub const WORKER_PREFIX: &str = "fn-worker-";
/// Name of the acceptor thread.
pub const ACCEPTOR_NAME: &str = "host-acceptor";
/// Name of the poller thread.
pub const POLLER_NAME: &str = "host-poller";

/// How to run a host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Address to listen on; port 0 picks a free port
    /// ([`RunningHost::local_addr`] tells which).
    pub listen: SocketAddr,
    /// Number of worker threads: the host's concurrency limit.
    pub workers: usize,
    /// CPUs to pin the workers to; the acceptor and poller go on the other
    /// CPUs this process may use. `None`: no pinning.
    pub worker_cpus: Option<Vec<usize>>,
    /// Unix datagram socket to send arrival/completion events to
    /// ([`crate::notify`]); it must exist when the host starts.
    pub notify: Option<PathBuf>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body: usize,
    /// How long a request may take to arrive completely, from its first
    /// byte (408 after), however steadily its bytes trickle in.
    pub request_timeout: Duration,
    /// How long a reply may wait for a client that does not read it.
    pub io_timeout: Duration,
    /// How long a graceful shutdown waits for requests in flight before it
    /// cuts them off.
    pub drain_timeout: Duration,
    /// Limit on the bytes (head and body) of the requests handed to workers
    /// and not yet answered, plus the memory their functions estimate
    /// ([`crate::catalogue::Function::memory_estimate`]); a request that
    /// would pass it gets 503 with `Retry-After` (one alone always fits,
    /// unless its function's estimate alone passes the limit: 413).
    pub max_inflight_bytes: usize,
    /// Listen backlog.
    pub backlog: i32,
}

impl Default for HostConfig {
    /// Loopback on a free port, [`DEFAULT_WORKERS`] unpinned workers.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers: DEFAULT_WORKERS,
            worker_cpus: None,
            notify: None,
            max_body: DEFAULT_MAX_BODY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            backlog: DEFAULT_BACKLOG,
        }
    }
}

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The configuration is inconsistent; the message says what to change.
    #[error("invalid host configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (pick a free port, or port 0 for any)")]
    Bind { addr: SocketAddr, source: io::Error },
    /// A thread could not be pinned to its CPUs.
    #[error("cannot pin {thread} to CPUs {cpus}: {source}")]
    Affinity {
        thread: String,
        cpus: String,
        source: io::Error,
    },
    /// The notify socket could not be reached.
    #[error(
        "cannot connect to the notify socket {}: {source} (the agent must bind a Unix datagram socket there before the host starts)",
        path.display()
    )]
    Notify { path: PathBuf, source: io::Error },
    /// A system resource (thread, epoll, eventfd) could not be created.
    #[error("cannot create the host's {what}: {source}")]
    Resource {
        what: &'static str,
        source: io::Error,
    },
}

/// Work for the worker pool.
pub(crate) enum Job {
    /// A connection whose request is in the socket.
    Serve(Handoff),
    /// Exit the worker loop (sent once per worker at shutdown).
    Stop,
}

/// Counters every thread adds to.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) shed: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) abandoned: AtomicU64,
}

/// State every host thread shares.
pub(crate) struct Shared {
    pub(crate) catalogue: Catalogue,
    pub(crate) functions_json: Vec<u8>,
    pub(crate) config: HostConfig,
    pub(crate) epoll: Epoll,
    jobs_tx: Sender<Job>,
    pub(crate) jobs_rx: Receiver<Job>,
    /// Connections coming back to the poller, and its wake-up.
    back_tx: Sender<Back>,
    pub(crate) back_rx: Receiver<Back>,
    pub(crate) poller_wake: EventFd,
    /// The poller's "shutdown seen; the last requests are queued".
    pub(crate) stop_ack: (Sender<()>, Receiver<()>),
    worker_done: (Sender<()>, Receiver<()>),
    /// Graceful shutdown has begun.
    pub(crate) stopping: AtomicBool,
    /// The drain bound passed: workers drop what is still queued.
    pub(crate) abandoning: AtomicBool,
    /// The poller cuts off what is left and exits.
    pub(crate) finishing: AtomicBool,
    pub(crate) notifier: Option<Notifier>,
    pub(crate) inflight: InFlight,
    next_conn_id: AtomicU64,
    pub(crate) counters: Counters,
}

impl Shared {
    /// Queues a job for the workers.
    pub(crate) fn dispatch(&self, job: Job) {
        // The receiver lives in `Shared` itself, so sending cannot fail.
        let _ = self.jobs_tx.send(job);
    }

    /// Hands a connection (or news of its end) to the poller.
    pub(crate) fn give_back(&self, msg: Back) {
        let _ = self.back_tx.send(msg);
        self.poller_wake.signal();
    }
}

/// Counters of a running host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostStats {
    /// Connections accepted.
    pub connections: u64,
    /// Requests answered by a worker (any status, including errors after a
    /// full read).
    pub requests: u64,
    /// Requests not complete within the request timeout (408).
    pub timed_out: u64,
    /// Requests refused because of the bytes-in-flight limit (503), by
    /// their size or by their function's memory estimate.
    pub shed: u64,
    /// Requests refused as malformed, too large or cut short (4xx).
    pub rejected: u64,
    /// Invocations whose client hung up while they ran (a function that
    /// can, such as `spin`, stopped early).
    pub cancelled: u64,
    /// Requests still queued or running when the drain bound passed; their
    /// connections were closed unanswered.
    pub abandoned: u64,
    /// Notify events dropped because the agent's socket was full or gone.
    pub notify_dropped: u64,
}

/// Starts hosts.
#[derive(Debug)]
pub struct Host;

impl Host {
    /// Binds, starts the acceptor, the poller and every worker, and returns
    /// once all of them run (pinned, when asked).
    pub fn start(config: HostConfig, catalogue: Catalogue) -> Result<RunningHost, HostError> {
        validate(&config)?;
        let resource = |what| move |source| HostError::Resource { what, source };
        let (worker_cpus, service_cpus) = plan_cpus(config.worker_cpus.as_deref())?;
        let notifier = config
            .notify
            .as_deref()
            .map(Notifier::connect)
            .transpose()?;
        let listener = bind(&config)?;
        let local_addr = listener
            .local_addr()
            .map_err(resource("listener address"))?;
        let functions_json =
            serde_json::to_vec(&catalogue.infos()).expect("function infos serialise");
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let (back_tx, back_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            catalogue,
            functions_json,
            epoll: Epoll::new().map_err(resource("epoll instance"))?,
            jobs_tx,
            jobs_rx,
            back_tx,
            back_rx,
            poller_wake: EventFd::new().map_err(resource("poller eventfd"))?,
            stop_ack: crossbeam_channel::bounded(1),
            worker_done: crossbeam_channel::unbounded(),
            stopping: AtomicBool::new(false),
            abandoning: AtomicBool::new(false),
            finishing: AtomicBool::new(false),
            notifier,
            inflight: InFlight::new(config.max_inflight_bytes),
            next_conn_id: AtomicU64::new(1),
            counters: Counters::default(),
            config,
        });
        shared
            .epoll
            .add(shared.poller_wake.fd(), poller::WAKE_TOKEN)
            .map_err(resource("epoll registration"))?;
        let wake = Arc::new(EventFd::new().map_err(resource("shutdown eventfd"))?);

        let mut host = RunningHost {
            shared: shared.clone(),
            wake: wake.clone(),
            local_addr,
            acceptor: None,
            poller: None,
            workers: Vec::new(),
            worker_tids: Vec::new(),
            acceptor_tid: 0,
            poller_tid: 0,
            service_cpus: service_cpus.clone(),
            stopped: false,
        };
        // From here on, an error drops `host`, which stops what did start.
        for i in 0..shared.config.workers {
            let s = shared.clone();
            let cpus = worker_cpus.clone();
            let (handle, tid) = spawn_pinned(format!("{WORKER_PREFIX}{i}"), cpus, move |tid| {
                worker::Worker::new(tid).run(&s);
                let _ = s.worker_done.0.send(());
            })?;
            host.workers.push(handle);
            host.worker_tids.push(tid);
        }
        let s = shared.clone();
        let (handle, tid) = spawn_pinned(POLLER_NAME.into(), service_cpus.clone(), move |_| {
            poller::run(&s)
        })?;
        host.poller = Some(handle);
        host.poller_tid = tid;
        let s = shared.clone();
        let w = wake.clone();
        let (handle, tid) = spawn_pinned(ACCEPTOR_NAME.into(), service_cpus, move |_| {
            accept_loop(&s, listener, &w)
        })?;
        host.acceptor = Some(handle);
        host.acceptor_tid = tid;
        Ok(host)
    }
}

fn validate(config: &HostConfig) -> Result<(), HostError> {
    let refuse = |what: &str| Err(HostError::Config(what.into()));
    if config.workers == 0 {
        return refuse("workers must be at least 1");
    }
    if config.request_timeout.is_zero() {
        return refuse("the request timeout must be above 0 (try 10s)");
    }
    if config.io_timeout.is_zero() {
        return refuse("the I/O timeout must be above 0 (try 10s)");
    }
    if config.max_inflight_bytes == 0 {
        return refuse("the bytes-in-flight limit must be above 0 (try 256MiB)");
    }
    Ok(())
}

/// A host that is serving. Dropping it shuts it down like
/// [`RunningHost::shutdown`].
pub struct RunningHost {
    shared: Arc<Shared>,
    wake: Arc<EventFd>,
    local_addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
    poller: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    worker_tids: Vec<u32>,
    acceptor_tid: u32,
    poller_tid: u32,
    service_cpus: Option<Vec<usize>>,
    stopped: bool,
}

impl std::fmt::Debug for RunningHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHost")
            .field("local_addr", &self.local_addr)
            .field("worker_tids", &self.worker_tids)
            .finish_non_exhaustive()
    }
}

impl RunningHost {
    /// The address the host listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Kernel thread ids of the workers, in `fn-worker-<i>` order.
    pub fn worker_tids(&self) -> &[u32] {
        &self.worker_tids
    }

    /// Kernel thread id of `host-acceptor`.
    pub fn acceptor_tid(&self) -> u32 {
        self.acceptor_tid
    }

    /// Kernel thread id of `host-poller`.
    pub fn poller_tid(&self) -> u32 {
        self.poller_tid
    }

    /// CPUs the acceptor and poller are pinned to (`None`: not pinned,
    /// because no worker CPUs were given or they cover every CPU).
    pub fn service_cpus(&self) -> Option<&[usize]> {
        self.service_cpus.as_deref()
    }

    /// Counters so far.
    pub fn stats(&self) -> HostStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HostStats {
            connections: get(&c.connections),
            requests: get(&c.requests),
            timed_out: get(&c.timed_out),
            shed: get(&c.shed),
            rejected: get(&c.rejected),
            cancelled: get(&c.cancelled),
            abandoned: get(&c.abandoned),
            notify_dropped: self.shared.notifier.as_ref().map_or(0, Notifier::dropped),
        }
    }

    /// Graceful shutdown: stops accepting, serves the requests that have
    /// arrived (their replies say `connection: close`) for up to the drain
    /// timeout, closes idle connections and ones whose request is still
    /// arriving, and then cuts off whatever still runs (its socket shut
    /// down, its invocation asked to cancel). Returns within the drain
    /// timeout plus a short grace, even when a function cannot stop early
    /// (that worker is left to finish on its own). Returns the final
    /// counters.
    pub fn shutdown(mut self) -> HostStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let drain_until = Instant::now() + self.shared.config.drain_timeout;
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        self.wake.signal();
        shared.poller_wake.signal();
        // The acceptor drops the listener on exit: new connections are
        // refused from here on.
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        // The poller queues the requests already complete in their sockets
        // and closes every other connection it holds.
        if self.poller.is_some() {
            let _ = shared.stop_ack.1.recv_deadline(drain_until);
        }
        // Stops queue behind the requests still waiting for a worker.
        for _ in &self.workers {
            shared.dispatch(Job::Stop);
        }
        let mut exited = 0;
        while exited < self.workers.len() && shared.worker_done.1.recv_deadline(drain_until).is_ok()
        {
            exited += 1;
        }
        if exited < self.workers.len() {
            shared.abandoning.store(true, Ordering::SeqCst);
        }
        shared.finishing.store(true, Ordering::SeqCst);
        shared.poller_wake.signal();
        if let Some(h) = self.poller.take() {
            let _ = h.join();
        }
        if exited < self.workers.len() {
            // Cut off: reads and writes fail at once and `spin` stops; a
            // function that cannot stop keeps its worker until it returns.
            let grace = Instant::now() + CUT_OFF_GRACE;
            while exited < self.workers.len() && shared.worker_done.1.recv_deadline(grace).is_ok() {
                exited += 1;
            }
        }
        for h in self.workers.drain(..) {
            if h.is_finished() {
                let _ = h.join();
            }
        }
        while let Ok(job) = shared.jobs_rx.try_recv() {
            drop(job);
        }
        while let Ok(msg) = shared.back_rx.try_recv() {
            drop(msg);
        }
    }
}

/// How long a shutdown waits for workers after cutting their requests off.
const CUT_OFF_GRACE: Duration = Duration::from_millis(500);

impl Drop for RunningHost {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Splits the CPUs: workers on `worker_cpus`, the acceptor and poller on
/// the rest of the CPUs this process may use (`None` when that is empty or
/// no worker CPUs were given).
type CpuPlan = (Option<Vec<usize>>, Option<Vec<usize>>);

fn plan_cpus(worker_cpus: Option<&[usize]>) -> Result<CpuPlan, HostError> {
    let Some(worker_cpus) = worker_cpus else {
        return Ok((None, None));
    };
    if worker_cpus.is_empty() {
        return Err(HostError::Config(
            "worker CPU list is empty (leave it out for no pinning)".into(),
        ));
    }
    let allowed = current_affinity().map_err(|source| HostError::Resource {
        what: "CPU affinity query",
        source,
    })?;
    if let Some(cpu) = worker_cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(HostError::Config(format!(
            "CPU {cpu} is not available to this process (available: {}); pick worker CPUs from those",
            format_cpu_list(&allowed)
        )));
    }
    let rest: Vec<usize> = allowed
        .into_iter()
        .filter(|c| !worker_cpus.contains(c))
        .collect();
    Ok((
        Some(worker_cpus.to_vec()),
        (!rest.is_empty()).then_some(rest),
    ))
}

fn bind(config: &HostConfig) -> Result<TcpListener, HostError> {
    use socket2::{Domain, Socket, Type};
    let addr = config.listen;
    let err = |source| HostError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(config.backlog).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

/// Spawns a named thread, pins it, and waits until it runs; returns its
/// handle and kernel tid.
fn spawn_pinned<F>(
    name: String,
    cpus: Option<Vec<usize>>,
    body: F,
) -> Result<(JoinHandle<()>, u32), HostError>
where
    F: FnOnce(u32) + Send + 'static,
{
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread_name = name.clone();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let tid = gettid();
            if let Some(cpus) = &cpus {
                if let Err(e) = pin_current_thread(cpus) {
                    let _ = ready_tx.send(Err(HostError::Affinity {
                        thread: thread_name,
                        cpus: format_cpu_list(cpus),
                        source: e,
                    }));
                    return;
                }
            }
            let _ = ready_tx.send(Ok(tid));
            body(tid);
        })
        .map_err(|source| HostError::Resource {
            what: "thread",
            source,
        })?;
    match ready_rx.recv() {
        Ok(Ok(tid)) => Ok((handle, tid)),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(HostError::Resource {
                what: "thread",
                source: io::Error::other(format!("{name} exited during start-up")),
            })
        }
    }
}

/// The acceptor's loop: accept everything pending, hand it to the poller,
/// sleep in `poll(2)` on the listener and the stop eventfd.
fn accept_loop(shared: &Shared, listener: TcpListener, wake: &EventFd) {
    let mut fds = [
        libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let io_timeout = shared.config.io_timeout;
    let want_rcvbuf = (MAX_PEEK_BYTES + MAX_HEAD).min(shared.config.max_body + MAX_HEAD);
    loop {
        // SAFETY: `fds` is a valid array of two pollfd structs.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0 || shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut adopted = false;
        loop {
            match listener.accept() {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let _ = stream.set_write_timeout(Some(io_timeout));
                    let peek_limit = peek_limit(&stream, want_rcvbuf);
                    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
                    let _ = shared.back_tx.send(Back::Adopt(Conn {
                        id,
                        stream: Arc::new(stream),
                        buf: Vec::new(),
                        peek_limit,
                    }));
                    adopted = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // EMFILE/ENFILE/ENOBUFS: the connection stays in the
                    // backlog; back off instead of spinning on it.
                    std::thread::sleep(Duration::from_millis(10));
                    break;
                }
            }
        }
        if adopted {
            shared.poller_wake.signal();
        }
    }
}

/// Raises the socket's receive buffer so it can hold `want` bytes of a
/// request the poller has not consumed (the kernel caps it at
/// `net.core.rmem_max`), and returns how much the poller may wait for:
/// half the buffer the kernel granted (the rest is its bookkeeping; a
/// buffer holds more than half of its size in payload), at most
/// [`MAX_PEEK_BYTES`].
fn peek_limit(stream: &std::net::TcpStream, want: usize) -> usize {
    let sock = socket2::SockRef::from(stream);
    let granted = match sock.recv_buffer_size() {
        Ok(now) if now >= 2 * want => now,
        _ => {
            let _ = sock.set_recv_buffer_size(want);
            sock.recv_buffer_size().unwrap_or(0)
        }
    };
    (granted / 2).clamp(4096, MAX_PEEK_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_worker_cpus_means_no_pinning() {
        assert_eq!(plan_cpus(None).unwrap(), (None, None));
    }

    #[test]
    fn an_empty_worker_cpu_list_is_refused() {
        assert!(matches!(plan_cpus(Some(&[])), Err(HostError::Config(_))));
    }

    #[test]
    fn host_threads_get_the_cpus_the_workers_do_not() {
        let allowed = current_affinity().unwrap();
        let (workers, service) = plan_cpus(Some(&allowed)).unwrap();
        assert_eq!(workers.as_deref(), Some(&allowed[..]));
        assert_eq!(service, None, "nothing left for the host threads");
        if allowed.len() >= 2 {
            let (_, service) = plan_cpus(Some(&allowed[1..])).unwrap();
            assert_eq!(service, Some(vec![allowed[0]]));
        }
    }
}
