//! Optional outputs written beside the run record, off the hot path: the
//! per-invocation CSV (rows cross a bounded channel to a writer thread; a
//! full channel drops the row and counts it, it never stalls the sender; a
//! failed invocation's row has its end time and outcome but no response
//! time) and
//! the HdrHistogram interval log (one histogram per function per second,
//! tagged with the function label, readable by HdrHistogram's log tools).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use slokit_model::Outcome;

use crate::LoadgenError;

/// Rows the CSV channel holds before rows are dropped (and counted).
pub(crate) const CSV_CHANNEL: usize = 1 << 16;

/// One finished invocation for the CSV file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    pub seq: u64,
    pub function: u32,
    pub intended_ns: u64,
    pub actual_ns: u64,
    pub end_ns: u64,
    pub outcome: Outcome,
    pub exec_us: Option<u64>,
    pub service_us: Option<f64>,
}

/// One second of response times of one shard, per function.
#[derive(Debug)]
pub(crate) struct Interval {
    pub index: u64,
    pub hists: Vec<Histogram<u64>>,
}

fn output_error(path: &Path, e: impl std::fmt::Display) -> LoadgenError {
    LoadgenError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The CSV writer thread; its result says whether the file was written.
pub(crate) type CsvThread = std::thread::JoinHandle<Result<(), LoadgenError>>;

/// Starts the CSV writer thread; returns the channel and the thread, which
/// ends (flushing the file) when every sender is dropped.
pub(crate) fn spawn_csv_writer(
    path: &Path,
    labels: Vec<String>,
) -> Result<(crossbeam_channel::Sender<Row>, CsvThread), LoadgenError> {
    let file = File::create(path).map_err(|e| output_error(path, e))?;
    let (tx, rx) = crossbeam_channel::bounded::<Row>(CSV_CHANNEL);
    let path: PathBuf = path.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("loadgen-csv".into())
        .spawn(move || {
            let mut w = BufWriter::new(file);
            let io = |e: std::io::Error| output_error(&path, e);
            writeln!(
                w,
                "seq,label,intended_ms,sent_ms,end_ms,response_us,response_uncorrected_us,outcome,status,exec_us,service_us"
            )
            .map_err(io)?;
            for r in rx {
                // A failure has an end time but no response time.
                let ok = r.outcome == Outcome::Ok;
                let latency = |ns: u64| if ok { (ns / 1000).to_string() } else { String::new() };
                let (outcome, status) = match r.outcome {
                    Outcome::Ok => ("ok", String::new()),
                    Outcome::HttpError(s) => ("http_error", s.to_string()),
                    Outcome::Timeout => ("timeout", String::new()),
                    Outcome::ConnectError => ("connect_error", String::new()),
                    Outcome::ProtocolError => ("protocol_error", String::new()),
                };
                writeln!(
                    w,
                    "{},{},{:.6},{:.6},{:.6},{},{},{},{},{},{}",
                    r.seq,
                    labels[r.function as usize],
                    r.intended_ns as f64 / 1e6,
                    r.actual_ns as f64 / 1e6,
                    r.end_ns as f64 / 1e6,
                    latency(r.end_ns.saturating_sub(r.intended_ns)),
                    latency(r.end_ns.saturating_sub(r.actual_ns)),
                    outcome,
                    status,
                    r.exec_us.map(|v| v.to_string()).unwrap_or_default(),
                    r.service_us.map(|v| format!("{v:.1}")).unwrap_or_default(),
                )
                .map_err(io)?;
            }
            w.flush().map_err(io)
        })
        .map_err(|e| LoadgenError::Runtime(format!("cannot start the CSV writer thread: {e}")))?;
    Ok((tx, handle))
}

/// Merges the shards' interval histograms and writes them as an
/// HdrHistogram interval log (values in µs).
pub(crate) struct HlogWriter {
    path: PathBuf,
    file: BufWriter<File>,
    labels: Vec<String>,
    shards: usize,
    start: SystemTime,
    /// (index, reports received, merged histograms)
    pending: std::collections::BTreeMap<u64, (usize, Vec<Histogram<u64>>)>,
    header_written: bool,
}

impl HlogWriter {
    pub(crate) fn create(
        path: &Path,
        labels: Vec<String>,
        shards: usize,
        start: SystemTime,
    ) -> Result<Self, LoadgenError> {
        let file = File::create(path).map_err(|e| output_error(path, e))?;
        Ok(HlogWriter {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            labels,
            shards,
            start,
            pending: Default::default(),
            header_written: false,
        })
    }

    pub(crate) fn add(&mut self, iv: Interval) -> Result<(), LoadgenError> {
        let entry = self
            .pending
            .entry(iv.index)
            .or_insert_with(|| (0, Vec::new()));
        entry.0 += 1;
        if entry.1.is_empty() {
            entry.1 = iv.hists;
        } else {
            for (a, b) in entry.1.iter_mut().zip(&iv.hists) {
                a.add(b)
                    .map_err(|e| output_error(&self.path, format!("{e:?}")))?;
            }
        }
        // Intervals every shard has reported are complete.
        let ready: Vec<u64> = self
            .pending
            .iter()
            .take_while(|(_, (n, _))| *n >= self.shards)
            .map(|(k, _)| *k)
            .collect();
        for k in ready {
            let (_, hists) = self.pending.remove(&k).expect("present");
            self.write(k, &hists)?;
        }
        Ok(())
    }

    fn write(&mut self, index: u64, hists: &[Histogram<u64>]) -> Result<(), LoadgenError> {
        let path = self.path.clone();
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        if !self.header_written {
            builder
                .add_comment("slokit loadgen: response time from the intended send time, µs; one interval per second, tagged by function")
                .with_start_time(self.start)
                .with_base_time(self.start);
            self.header_written = true;
        }
        let mut w = builder
            .begin_log_with(&mut self.file, &mut serializer)
            .map_err(|e| output_error(&path, e))?;
        for (h, label) in hists.iter().zip(&self.labels) {
            w.write_histogram(
                h,
                Duration::from_secs(index),
                Duration::from_secs(1),
                Tag::new(label),
            )
            .map_err(|e| output_error(&path, format!("{e:?}")))?;
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<(), LoadgenError> {
        let rest: Vec<_> = std::mem::take(&mut self.pending).into_iter().collect();
        for (k, (_, hists)) in rest {
            self.write(k, &hists)?;
        }
        self.file.flush().map_err(|e| output_error(&self.path, e))
    }
}
