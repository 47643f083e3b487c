//! The eBPF monitor: `src/bpf/monitor.bpf.c` through its libbpf-cargo
//! skeleton. `tp_btf/sock_recv_length` and `tp_btf/sock_send_length` give
//! one ring-buffer event per receive/send of a target process (filtered in
//! the kernel by a bitmap of target tgids); `tp_btf/sched_switch` keeps per-thread
//! on-CPU time in a hash map read here. BTF tracepoints need no kprobes, no
//! fentry and no tracefs (the seed used kprobes on tcp_recvmsg/tcp_sendmsg).

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::path::Path;
use std::rc::Rc;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, RingBuffer, RingBufferBuilder};

use super::{Monitor, RingPositions};
use crate::error::SchedError;
use crate::register::{EventKind, SocketEvent};
use crate::runtime::CpuTimes;
use crate::skel::{types, MonitorSkel, MonitorSkelBuilder};

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Knobs of the BPF program (its `const volatile` rodata).
#[derive(Debug, Clone, Copy)]
pub struct EbpfOptions {
    /// Only AF_INET/AF_INET6 sockets (not Unix sockets).
    pub inet_only: bool,
    /// Keep per-thread on-CPU time (sched_switch).
    pub track_cpu: bool,
    /// Wake the agent per event; false: events wait until the agent drains
    /// the ring on its periodic tick (the baselines, which only count).
    pub wakeup: bool,
    /// The agent's pid when its idle pollers watch the ring
    /// ([`Monitor::ring_positions`]) and kick it: while a watcher — one of
    /// its pollers (its `SCHED_IDLE` threads) or the thread that loads the
    /// monitor, which must be the one that drains it — is on its CPU,
    /// events skip the ring's own wake-up (an irq_work interrupt and an
    /// IPI, paid on the function's CPU; docs/measurements.md). Needs
    /// `track_cpu` (the sched_switch program keeps which CPUs have a
    /// watcher on them). 0: every event wakes.
    pub agent_tgid: u32,
}

impl Default for EbpfOptions {
    fn default() -> Self {
        EbpfOptions {
            inet_only: true,
            track_cpu: true,
            wakeup: true,
            agent_tgid: 0,
        }
    }
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// The tracepoints the monitor attaches to besides sched_switch (which every
/// kernel with BTF has).
const TRACEPOINTS: [&str; 2] = ["sock_recv_length", "sock_send_length"];

/// Whether `needle` occurs in `haystack` (the kernel's BTF names its
/// tracepoints' types `btf_trace_<name>`).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}

/// What is missing for the eBPF monitor, checked before loading so the
/// error says exactly what to fix; empty when nothing obvious is.
pub fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(BTF_PATH).exists() {
        missing.push(format!(
            "no BTF at {BTF_PATH} (kernel built without CONFIG_DEBUG_INFO_BTF): \
             use --monitor notify"
        ));
    }
    if let Ok(btf) = std::fs::read(BTF_PATH) {
        for tp in TRACEPOINTS {
            if !contains(&btf, format!("btf_trace_{tp}").as_bytes()) {
                missing.push(format!(
                    "the kernel has no {tp} tracepoint (added in Linux 6.3): \
                     use --monitor notify"
                ));
            }
        }
    }
    match effective_caps() {
        Some(caps) => {
            let has = |c: u32| caps & (1u64 << c) != 0;
            if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
                missing.push("no CAP_BPF (run as root or grant CAP_BPF)".into());
            }
            if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
                missing.push("no CAP_PERFMON (tracing programs need it; run as root)".into());
            }
        }
        None => missing.push("cannot read CapEff from /proc/self/status".into()),
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 && !missing.is_empty() {
        missing.insert(0, "not root".into());
    }
    missing
}

fn bpf_error(what: &str, e: libbpf_rs::Error) -> SchedError {
    let mut msg = format!("{what}: {e}");
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        msg.push_str(&format!(" — missing: {}", missing.join("; ")));
    }
    SchedError::Bpf(msg)
}

/// Loads and attaches the monitor, runs `f` with it, then detaches.
pub fn with_ebpf_monitor<R>(
    opts: EbpfOptions,
    f: impl FnOnce(&mut dyn Monitor) -> R,
) -> Result<R, SchedError> {
    with_loaded(opts, |m| f(m))
}

fn with_loaded<R>(
    opts: EbpfOptions,
    f: impl FnOnce(&mut EbpfMonitor<'_>) -> R,
) -> Result<R, SchedError> {
    let missing = missing_prerequisites();
    if !missing.is_empty() {
        return Err(SchedError::Bpf(missing.join("; ")));
    }
    let mut object = MaybeUninit::uninit();
    let mut open = MonitorSkelBuilder::default()
        .open(&mut object)
        .map_err(|e| bpf_error("cannot open the BPF object", e))?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| SchedError::Bpf("BPF object has no rodata section".into()))?;
    rodata.inet_only = opts.inet_only;
    rodata.track_cpu = opts.track_cpu;
    rodata.wakeup = opts.wakeup;
    rodata.agent_tgid = if opts.track_cpu { opts.agent_tgid } else { 0 };
    rodata.agent_tid = slokit_sys::sched::gettid();
    // Without CPU accounting the sched_switch program is not even loaded:
    // it would run on every context switch of the machine for nothing.
    open.progs.slokit_switch.set_autoload(opts.track_cpu);
    let mut skel = open
        .load()
        .map_err(|e| bpf_error("cannot load the BPF programs", e))?;
    skel.attach().map_err(|e| {
        bpf_error(
            "cannot attach tp_btf/sock_recv_length, sock_send_length (and sched_switch)",
            e,
        )
    })?;
    let queue: Rc<RefCell<Vec<SocketEvent>>> = Rc::default();
    let q = queue.clone();
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, move |data: &[u8]| {
            if let Some(e) = parse_event(data) {
                q.borrow_mut().push(e);
            }
            0
        })
        .map_err(|e| bpf_error("cannot open the ring buffer", e))?;
    let ring = builder
        .build()
        .map_err(|e| bpf_error("cannot open the ring buffer", e))?;
    let mut monitor = EbpfMonitor {
        skel: &skel,
        ring,
        queue,
    };
    let r = f(&mut monitor);
    drop(monitor);
    Ok(r)
}

/// Decodes one ring-buffer record (`struct slokit_event`).
fn parse_event(data: &[u8]) -> Option<SocketEvent> {
    if data.len() < std::mem::size_of::<types::slokit_event>() {
        return None;
    }
    // SAFETY: the record holds a whole `struct slokit_event` (checked
    // above), a plain-old-data struct; read_unaligned copies it out.
    let e: types::slokit_event = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
    let kind = match e.kind {
        1 => EventKind::Recv,
        2 => EventKind::Send,
        _ => return None,
    };
    Some(SocketEvent {
        kind,
        tid: e.tid,
        tgid: e.tgid,
        sock: e.sock,
        bytes: e.bytes as i64,
        ts_ns: e.ts_ns,
    })
}

/// One page of the ring buffer map, mapped read-only: page 0 is the
/// consumer's (its first word the consumer position), page 1 the
/// producer's (the producer position, advanced on every reserve).
struct RingPage {
    addr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: a read-only shared mapping, only ever read atomically.
unsafe impl Send for RingPage {}
// SAFETY: as above.
unsafe impl Sync for RingPage {}

impl RingPage {
    fn map(ring: std::os::fd::BorrowedFd<'_>, page: usize) -> std::io::Result<RingPage> {
        use std::os::fd::AsRawFd;
        // SAFETY: sysconf has no preconditions.
        let len = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a new read-only shared mapping of one page of the map, at
        // a page offset the ring buffer's mmap layout provides.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                ring.as_raw_fd(),
                (page * len) as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let addr = std::ptr::NonNull::new(addr).ok_or_else(std::io::Error::last_os_error)?;
        Ok(RingPage { addr, len })
    }

    fn position(&self) -> u64 {
        // SAFETY: the page is mapped for our lifetime, page-aligned, and
        // its first word is written with release semantics.
        unsafe {
            (*self.addr.as_ptr().cast::<std::sync::atomic::AtomicU64>())
                .load(std::sync::atomic::Ordering::Acquire)
        }
    }
}

impl Drop for RingPage {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.addr.as_ptr(), self.len) };
    }
}

/// The loaded monitor (lives inside [`with_ebpf_monitor`]).
struct EbpfMonitor<'a> {
    skel: &'a MonitorSkel<'a>,
    ring: RingBuffer<'a>,
    queue: Rc<RefCell<Vec<SocketEvent>>>,
}

impl<'a> EbpfMonitor<'a> {
    /// One slot of the per-CPU `counters` map, summed over CPUs.
    fn counter(&self, slot: types::slokit_counter) -> u64 {
        let key = slot.0.to_ne_bytes();
        match self.skel.maps.counters.lookup_percpu(&key, MapFlags::ANY) {
            Ok(Some(per_cpu)) => per_cpu
                .iter()
                .filter_map(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
                .sum(),
            _ => 0,
        }
    }

    /// CPUs (bit per CPU < 64) with a watcher on them now, as the
    /// sched_switch program keeps them for [`EbpfOptions::agent_tgid`].
    #[cfg(test)]
    fn agent_cpus(&self) -> &'a std::sync::atomic::AtomicU64 {
        let skel: &'a MonitorSkel<'a> = self.skel;
        let bss = skel.maps.bss_data.as_deref().expect("mmapped .bss");
        let word = std::ptr::addr_of!(bss.agent_on_cpu).cast::<std::sync::atomic::AtomicU64>();
        // SAFETY: an aligned u64 of the mmapped .bss, live as long as the
        // skeleton; the BPF program writes it with atomic operations.
        unsafe { &*word }
    }
}

impl CpuTimes for EbpfMonitor<'_> {
    fn cpu_ns(&self, tid: u32, now_ns: u64) -> Option<u64> {
        let bytes = self
            .skel
            .maps
            .cpu_acct
            .lookup(&tid.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        if bytes.len() < std::mem::size_of::<types::slokit_cpu_acct>() {
            return None;
        }
        // SAFETY: a whole plain-old-data `struct slokit_cpu_acct`.
        let a: types::slokit_cpu_acct = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let running = if a.on_cpu != 0 {
            now_ns.saturating_sub(a.last_in_ns)
        } else {
            0
        };
        Some(a.total_ns + running)
    }
}

impl Monitor for EbpfMonitor<'_> {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn fd(&self) -> RawFd {
        self.ring.epoll_fd()
    }

    fn drain(&mut self, out: &mut Vec<SocketEvent>) -> Result<(), SchedError> {
        self.ring
            .consume()
            .map_err(|e| SchedError::Bpf(format!("ring buffer: {e}")))?;
        out.append(&mut self.queue.borrow_mut());
        Ok(())
    }

    fn drops(&self) -> u64 {
        self.counter(types::slokit_counter::SLOKIT_CNT_RINGBUF_DROPS)
    }

    fn untracked_threads(&self) -> u64 {
        self.counter(types::slokit_counter::SLOKIT_CNT_ACCT_FULL)
    }

    fn ring_nudges(&self) -> u64 {
        self.counter(types::slokit_counter::SLOKIT_CNT_NUDGES)
    }

    fn ring_positions(&self) -> Result<Option<RingPositions>, SchedError> {
        use std::os::fd::AsFd;
        let map = |page| {
            RingPage::map(self.skel.maps.events.as_fd(), page).map_err(|e| {
                SchedError::sys(
                    "cannot map the ring buffer's positions for the idle poller",
                    e,
                )
            })
        };
        let (consumer, producer) = (map(0)?, map(1)?);
        Ok(Some(Box::new(move || {
            (producer.position(), consumer.position())
        })))
    }

    fn add_target(&mut self, tgid: u32) -> Result<(), SchedError> {
        // The target set is a bitmap of one bit per tgid (see intf.h); only
        // this thread writes it.
        let map = &self.skel.maps.targets;
        if u64::from(tgid) >= u64::from(map.max_entries()) * 64 {
            return Err(SchedError::Config(format!(
                "pid {tgid} is above the kernel's pid limit"
            )));
        }
        let word = (tgid / 64).to_ne_bytes();
        let fail = |e| SchedError::Bpf(format!("cannot add pid {tgid} to the target map: {e}"));
        let bits = map
            .lookup(&word, MapFlags::ANY)
            .map_err(fail)?
            .and_then(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
            .unwrap_or(0);
        map.update(
            &word,
            &(bits | 1 << (tgid % 64)).to_ne_bytes(),
            MapFlags::ANY,
        )
        .map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{Change, Register};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    const CHILD_ENV: &str = "SLOKIT_TEST_HTTP_CHILD";

    /// A tiny HTTP/1.1 server with one `fn-worker-N` thread per connection;
    /// replies in two writes (head, then body) so a reply spans sends.
    /// Runs only as the child process of `sees_every_loopback_request_once`.
    #[test]
    fn http_child_server() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        println!("PORT={}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        for (i, conn) in listener.incoming().enumerate() {
            let mut conn = conn.unwrap();
            std::thread::Builder::new()
                .name(format!("fn-worker-{i}"))
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut have = Vec::new();
                    loop {
                        let n = match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        have.extend_from_slice(&buf[..n]);
                        while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            have.drain(..end + 4);
                            let body = b"{\"ok\":true}";
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            );
                            if conn.write_all(head.as_bytes()).is_err()
                                || conn.write_all(body).is_err()
                            {
                                return;
                            }
                        }
                    }
                })
                .unwrap();
        }
    }

    struct Server(Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn finds_a_tracepoint_name_in_btf_bytes() {
        let btf = b"\0btf_trace_sched_switch\0btf_trace_sock_recv_length\0";
        assert!(contains(btf, b"btf_trace_sock_recv_length"));
        assert!(!contains(btf, b"btf_trace_sock_send_length"));
        assert!(!contains(b"", b"x"));
    }

    fn skip_without_bpf() -> bool {
        let missing = missing_prerequisites();
        if missing.is_empty() {
            return false;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to load BPF: {missing:?}"
        );
        eprintln!("skipping: eBPF monitor unavailable: {missing:?}");
        true
    }

    #[test]
    fn sees_every_loopback_request_once() {
        sees_every_loopback_request_once_with(EbpfOptions::default());
    }

    /// The baselines' monitor: no wake-ups, no sched_switch program.
    #[test]
    fn sees_every_loopback_request_once_without_cpu_tracking_or_wakeups() {
        sees_every_loopback_request_once_with(EbpfOptions {
            wakeup: false,
            track_cpu: false,
            ..EbpfOptions::default()
        });
    }

    fn sees_every_loopback_request_once_with(opts: EbpfOptions) {
        if skip_without_bpf() {
            return;
        }
        // its client sockets would show in the watcher tests' monitors,
        // which target this process
        let _turn = crate::idle_poll::tests::TURN
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "monitor::ebpf::tests::http_child_server",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let server = Server(child);
        let mut line = String::new();
        let port: u16 = loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
            // the harness may print "test … ... " before it on the same line
            if let Some(i) = line.find("PORT=") {
                break line[i + 5..].trim().parse().expect("child prints its port");
            }
        };
        let pid = server.0.id();

        let changes = with_ebpf_monitor(opts, |m| {
            m.add_target(pid).unwrap();
            let positions = m
                .ring_positions()
                .expect("the ring's pages map")
                .expect("the eBPF monitor has a ring");
            let position = || positions().0;
            let before = position();
            // 3 keep-alive connections × 40 requests + 30 one-shot connections
            let mut sent = 0;
            let mut conns: Vec<TcpStream> = (0..3)
                .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
                .collect();
            let request = b"POST /invoke/spin HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
            let read_reply = |c: &mut TcpStream| {
                let mut got = Vec::new();
                let mut buf = [0u8; 512];
                while !got.ends_with(b"{\"ok\":true}") {
                    let n = c.read(&mut buf).unwrap();
                    assert!(n > 0, "server closed");
                    got.extend_from_slice(&buf[..n]);
                }
            };
            for _ in 0..40 {
                for c in conns.iter_mut() {
                    c.write_all(request).unwrap();
                    read_reply(c);
                    sent += 1;
                }
            }
            // every event advanced the position the idle poller watches by
            // its record and the ring's 8-byte header (≥ 2 events a request)
            let per_event = std::mem::size_of::<types::slokit_event>() as u64 + 8;
            assert!(
                position() >= before + 2 * per_event * sent as u64,
                "{before} → {}",
                position()
            );
            // the keep-alive connections' worker threads, while they live
            let keep_alive_workers = crate::targets::threads_named(pid, "fn-worker-");
            // they have on-CPU time in the BPF map (checked while they live:
            // a connection's thread exits when its connection closes)
            let now = slokit_sys::clock::monotonic_ns();
            if opts.track_cpu {
                assert!(keep_alive_workers
                    .iter()
                    .any(|t| m.cpu_ns(*t, now).unwrap_or(0) > 0));
            } else {
                assert!(keep_alive_workers
                    .iter()
                    .all(|t| m.cpu_ns(*t, now).is_none()));
            }
            for _ in 0..30 {
                let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.write_all(request).unwrap();
                read_reply(&mut c);
                sent += 1;
            }
            drop(conns);
            let mut reg = Register::new();
            let mut changes = Vec::new();
            let mut events = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                m.drain(&mut events).unwrap();
                for e in events.drain(..) {
                    assert_eq!(e.tgid, pid, "only the target is seen");
                    reg.on_event(&e, &mut changes);
                }
                let ended = changes
                    .iter()
                    .filter(|c| matches!(c, Change::Ended { .. }))
                    .count();
                if ended >= sent {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(m.drops(), 0);
            (sent, changes, keep_alive_workers)
        })
        .unwrap();
        let (sent, changes, keep_alive_workers) = changes;
        let started = changes
            .iter()
            .filter(|c| matches!(c, Change::Started(_)))
            .count();
        let ended: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Ended {
                    request, end_ns, ..
                } => Some((request, end_ns)),
                _ => None,
            })
            .collect();
        assert_eq!(started, sent, "every request started exactly once");
        assert_eq!(ended.len(), sent, "every request ended exactly once");
        assert!(!changes.iter().any(|c| matches!(c, Change::Abandoned(_))));
        let mut on_keep_alive_workers = 0;
        for (r, end) in ended {
            assert!(*end >= r.start_ns);
            assert_ne!(
                r.tid, pid,
                "requests run on worker threads, not the acceptor"
            );
            on_keep_alive_workers += keep_alive_workers.contains(&r.tid) as usize;
        }
        assert_eq!(keep_alive_workers.len(), 3);
        assert_eq!(on_keep_alive_workers, 120, "3 keep-alive connections × 40");
    }

    #[test]
    fn parses_the_shared_event_layout() {
        assert_eq!(std::mem::size_of::<types::slokit_event>(), 32);
        let e = types::slokit_event {
            ts_ns: 5,
            sock: 0xffff_8880_0000_1000,
            tgid: 10,
            tid: 11,
            bytes: -32,
            kind: 2,
        };
        // SAFETY: viewing a POD struct as bytes.
        let bytes: [u8; 32] = unsafe { std::mem::transmute(e) };
        let s = parse_event(&bytes).unwrap();
        assert_eq!(
            (s.kind, s.tid, s.tgid, s.sock, s.bytes, s.ts_ns),
            (EventKind::Send, 11, 10, 0xffff_8880_0000_1000, -32, 5)
        );
    }

    /// A connected loopback TCP pair, Nagle off.
    fn loopback_pair() -> (TcpStream, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        (client, server)
    }

    /// One request's four socket calls.
    fn round_trip((client, server): &mut (TcpStream, TcpStream)) {
        let mut byte = [0u8; 1];
        client.write_all(b"q").unwrap();
        server.read_exact(&mut byte).unwrap();
        server.write_all(b"a").unwrap();
        client.read_exact(&mut byte).unwrap();
    }

    /// The watcher tests' setting: this thread is the agent (it loads the
    /// monitor) pinned to the agent CPU; traffic goes on the function CPU;
    /// the monitor skips wake-ups while a watcher of this process runs.
    struct WatchedRig {
        _turn: std::sync::MutexGuard<'static, ()>,
        agent_cpu: usize,
        fn_cpu: usize,
        opts: EbpfOptions,
        /// The agent CPU's bit in `agent_on_cpu`.
        bit: u64,
    }

    /// None where BPF or a second CPU is missing (the test then passes).
    fn watched_rig() -> Option<WatchedRig> {
        if skip_without_bpf() {
            return None;
        }
        let cpus = slokit_sys::cpu::online_cpus();
        if cpus.len() < 2 || cpus[0] >= 64 {
            return None;
        }
        let (agent_cpu, fn_cpu) = (cpus[0], *cpus.last().unwrap());
        let _turn = crate::idle_poll::tests::TURN
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        slokit_sys::cpu::pin_current_thread(&[agent_cpu]).unwrap();
        Some(WatchedRig {
            _turn,
            agent_cpu,
            fn_cpu,
            opts: EbpfOptions {
                agent_tgid: std::process::id(),
                ..EbpfOptions::default()
            },
            bit: 1u64 << agent_cpu,
        })
    }

    /// Spins until `bit` is set in `word` or `limit` passes.
    fn wait_for_bit(word: &std::sync::atomic::AtomicU64, bit: u64, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if word.load(std::sync::atomic::Ordering::Acquire) & bit != 0 {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Two-level with idle pollers: while the poller is on the agent CPU
    /// its bit is set and events skip the ring's wake-up; the poller's kick
    /// must then deliver every one of them (this test thread plays the
    /// agent: blocked on the ring and the kick eventfd, nothing else drains).
    #[test]
    fn the_idle_poller_delivers_the_events_that_skip_the_ring_wakeup() {
        use crate::idle_poll::{IdlePollers, Watch};
        use slokit_sys::poll::{Epoll, EventFd};
        use std::sync::Arc;
        let Some(rig) = watched_rig() else {
            return;
        };
        let (agent_cpu, fn_cpu, bit) = (rig.agent_cpu, rig.fn_cpu, rig.bit);
        const TRIPS: usize = 40;
        let (quiet, late, cleared) = with_loaded(rig.opts, |m| {
            m.add_target(std::process::id()).unwrap();
            let kick = Arc::new(EventFd::new().unwrap());
            let watch = Watch {
                positions: m.ring_positions().unwrap().unwrap(),
                kick: kick.clone(),
            };
            let pollers = IdlePollers::start(&[agent_cpu], Some(watch)).unwrap();
            let epoll = Epoll::new().unwrap();
            epoll.add(m.fd(), 1).unwrap();
            epoll.add(kick.fd(), 2).unwrap();
            let polled = m.agent_cpus();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let (tid_tx, tid_rx) = std::sync::mpsc::channel::<u32>();
            let (quiet, late) = std::thread::scope(|scope| {
                let traffic = scope.spawn(move || {
                    slokit_sys::cpu::pin_current_thread(&[fn_cpu]).unwrap();
                    tid_tx.send(slokit_sys::sched::gettid()).unwrap();
                    let mut pair = loopback_pair();
                    let mut quiet = 0;
                    for () in go_rx {
                        // give the agent CPU time to go idle (poller on it)
                        if wait_for_bit(polled, bit, Duration::from_millis(20)) {
                            quiet += 1;
                        }
                        round_trip(&mut pair);
                    }
                    quiet
                });
                // other tests of this process use sockets too: only the
                // traffic thread's events count
                let traffic_tid = tid_rx.recv().unwrap();
                let mut late = 0;
                let mut events = Vec::new();
                let mut tokens = Vec::new();
                for _ in 0..TRIPS {
                    go_tx.send(()).unwrap();
                    let start = Instant::now();
                    let mut seen = 0;
                    while seen < 4 && start.elapsed() < Duration::from_secs(2) {
                        epoll.wait(&mut tokens, 2_000).unwrap();
                        kick.drain();
                        m.drain(&mut events).unwrap();
                        seen += events.drain(..).filter(|e| e.tid == traffic_tid).count();
                    }
                    assert_eq!(seen, 4, "the round trip's events arrived");
                    // µs when kicked. Without the kick only a random
                    // preemption of the poller (its nudge) delivers them,
                    // far later than 20 ms on an idle machine.
                    if start.elapsed() > Duration::from_millis(20) {
                        late += 1;
                    }
                }
                drop(go_tx);
                (traffic.join().unwrap(), late)
            });
            drop(pollers);
            // neither watcher on the agent CPU (the poller exited, this
            // thread blocks in join): bit cleared
            let cleared = std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        slokit_sys::cpu::pin_current_thread(&[fn_cpu]).unwrap();
                        std::thread::sleep(Duration::from_millis(20));
                        polled.load(std::sync::atomic::Ordering::Acquire) & bit == 0
                    })
                    .join()
                    .unwrap()
            });
            (quiet, late, cleared)
        })
        .unwrap();
        assert!(
            late <= TRIPS / 4,
            "{late} of {TRIPS} round trips took > 20 ms"
        );
        assert!(
            quiet > 0,
            "the poller was seen on its CPU: quiet path taken"
        );
        assert!(cleared, "no watcher on the agent CPU: its bit is cleared");
    }

    /// When something other than the agent takes the agent CPU from the
    /// poller while events wait unconsumed (they skipped the ring's
    /// wake-up), the sched_switch program nudges the ring: an agent blocked
    /// on the ring alone wakes.
    #[test]
    fn a_preempted_poller_nudges_the_ring() {
        use crate::idle_poll::IdlePollers;
        use slokit_sys::poll::Epoll;
        let Some(rig) = watched_rig() else {
            return;
        };
        let (agent_cpu, fn_cpu, bit) = (rig.agent_cpu, rig.fn_cpu, rig.bit);
        let woke = with_loaded(rig.opts, |m| {
            m.add_target(std::process::id()).unwrap();
            // a poller that watches nothing: nobody kicks
            let pollers = IdlePollers::start(&[agent_cpu], None).unwrap();
            let epoll = Epoll::new().unwrap();
            epoll.add(m.fd(), 1).unwrap();
            let polled = m.agent_cpus();
            let woke = std::thread::scope(|scope| {
                scope.spawn(move || {
                    slokit_sys::cpu::pin_current_thread(&[fn_cpu]).unwrap();
                    let mut pair = loopback_pair();
                    for _ in 0..100 {
                        if wait_for_bit(polled, bit, Duration::from_millis(20)) {
                            round_trip(&mut pair);
                            break;
                        }
                    }
                    // another process takes the agent CPU from the poller
                    let mut busy = Command::new("taskset")
                        .args([
                            "-c",
                            &agent_cpu.to_string(),
                            "sh",
                            "-c",
                            "while :; do :; done",
                        ])
                        .spawn()
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = busy.kill();
                    let _ = busy.wait();
                });
                let mut tokens = Vec::new();
                epoll.wait(&mut tokens, 5_000).unwrap();
                !tokens.is_empty()
            });
            drop(pollers);
            (woke, m.ring_nudges())
        })
        .unwrap();
        let (woke, nudges) = woke;
        assert!(woke, "the agent blocked on the ring woke");
        assert!(nudges >= 1, "by a nudge");
    }
    /// The host's poller peeks at a request (MSG_PEEK) before a worker
    /// receives it: a peek consumes nothing and must not start a request;
    /// the worker's real `recv` afterwards is the one receive event.
    #[test]
    fn a_peek_is_not_a_receive() {
        use std::os::fd::AsRawFd;
        if skip_without_bpf() {
            return;
        }
        let _turn = crate::idle_poll::tests::TURN
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let me = std::process::id();
        let kinds = with_loaded(EbpfOptions::default(), |m| {
            m.add_target(me).unwrap();
            let (mut client, mut server) = loopback_pair();
            client.write_all(b"hello").unwrap();
            let mut buf = [0u8; 16];
            let peeked = loop {
                // SAFETY: a valid socket and a buffer of the length given.
                let n = unsafe {
                    libc::recv(
                        server.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_PEEK,
                    )
                };
                if n == 5 {
                    break n;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            assert_eq!(peeked, 5);
            server.read_exact(&mut buf[..5]).unwrap();
            let mut events = Vec::new();
            let mut kinds = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline && kinds.len() < 2 {
                m.drain(&mut events).unwrap();
                kinds.extend(
                    events
                        .drain(..)
                        .filter(|e| e.tgid == me && e.bytes == 5)
                        .map(|e| e.kind),
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            kinds
        })
        .unwrap();
        // the client's send and the server's one real receive
        assert_eq!(kinds, [EventKind::Send, EventKind::Recv]);
    }
}
