//! A trivial HTTP/1.1 server for load-generator benchmarks: answers every
//! request with 200 "ok" (and an `x-slokit-exec-us` header), keep-alive,
//! on loopback. `cargo run --release -p slokit-loadgen --example
//! trivial_server -- [PORT] [THREADS] [DELAY_US]` (defaults: 8099, 1
//! thread, no delay). With DELAY_US each reply waits that long in a
//! blocking-pool thread (`thread::sleep`, hrtimer precision), requests in
//! parallel: a server with a known, queue-free service time, so two load
//! generators' latency figures can be compared without their own
//! microsecond overheads dominating.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn ok(req: Request<Incoming>, delay: Duration) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the request body so the connection can be kept alive.
    let _ = req.into_body().collect().await;
    if !delay.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
    }
    Ok(Response::builder()
        .header(
            slokit_model::contract::EXEC_US_HEADER,
            delay.as_micros().to_string(),
        )
        .body(Full::new(Bytes::from_static(b"ok")))
        .expect("static response"))
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .map_or(8099, |p| p.parse().expect("PORT is a number"));
    let threads: usize = args
        .next()
        .map_or(1, |t| t.parse().expect("THREADS is a number"));
    let delay = Duration::from_micros(
        args.next()
            .map_or(0, |d| d.parse().expect("DELAY_US is a number")),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        #[allow(unreachable_code)]
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        eprintln!(
            "trivial_server listening on http://127.0.0.1:{port} ({threads} threads, delay {delay:?})"
        );
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors, for example: keep serving.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(move |r| ok(r, delay)))
                    .await;
            });
        }
    })
}
