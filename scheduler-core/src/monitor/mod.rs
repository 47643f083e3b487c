//! Monitors: where the agent learns of request arrivals and completions
//! without touching function code (the seed's Monitor). Two kinds behind one
//! trait: the eBPF monitor (BTF tracepoints, the default) and the notify
//! monitor (the host's datagrams, for kernels without BTF tracepoints).
//! Both also meter on-CPU time per thread ([`CpuTimes`]), the credit of the
//! two-level policy.

use std::os::fd::RawFd;

use serde::{Deserialize, Serialize};

use crate::error::SchedError;
use crate::register::SocketEvent;
use crate::runtime::CpuTimes;

pub mod ebpf;
pub mod notify;

/// Which monitor to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MonitorChoice {
    /// eBPF when it loads, else notify (when a notify path is given).
    #[default]
    Auto,
    Ebpf,
    Notify,
}

/// A running monitor.
pub trait Monitor: CpuTimes {
    /// `ebpf` or `notify`: named in every report.
    fn name(&self) -> &'static str;
    /// A descriptor that polls readable when events wait (for epoll).
    fn fd(&self) -> RawFd;
    /// Moves every waiting event to `out` without blocking.
    fn drain(&mut self, out: &mut Vec<SocketEvent>) -> Result<(), SchedError>;
    /// Events lost in the monitor (ring buffer full).
    fn drops(&self) -> u64;
    /// Target threads whose on-CPU time could not be tracked (the
    /// accounting map was full); their credit is not metered.
    fn untracked_threads(&self) -> u64 {
        0
    }
    /// Wake-ups the monitor sent because a watcher left its CPU with
    /// events pending (`EbpfOptions::agent_tgid`).
    fn ring_nudges(&self) -> u64 {
        0
    }
    /// Starts watching process `tgid`.
    fn add_target(&mut self, tgid: u32) -> Result<(), SchedError>;
    /// The event queue's producer and consumer positions, readable from
    /// another thread without a system call (the idle poller watches them);
    /// `None` when the monitor has no such queue.
    fn ring_positions(&self) -> Result<Option<RingPositions>, SchedError> {
        Ok(None)
    }
}

/// Reads (producer, consumer) positions of a monitor's ring: the producer
/// moves when an event is reserved, the consumer when the agent drained it.
pub type RingPositions = Box<dyn Fn() -> (u64, u64) + Send + Sync>;
