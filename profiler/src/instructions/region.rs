//! The counted region: the child side of the Valgrind count. The hidden
//! `slokit __count-instructions` subcommand calls [`run_counted`], which
//! invokes the function `warmup` times outside the region and then
//! `invocations` times inside [`slokit_counted_region`], the one symbol
//! callgrind is told to count (`--toggle-collect`) and to dump after
//! (`--dump-after`). The reply is dropped outside the region, as the wall
//! timing drops it after the clock stops.

use serde_json::Value;
use slokit_functions::Function;

/// The symbol callgrind counts inside; it must stay a real, named function.
pub const REGION_SYMBOL: &str = "slokit_counted_region";

/// Runs `f` once. Callgrind counts exactly the instructions executed between
/// entering and leaving this function, so it is never inlined and keeps its
/// unmangled name ([`REGION_SYMBOL`]).
#[no_mangle]
#[inline(never)]
pub fn slokit_counted_region(f: &mut dyn FnMut()) {
    f();
    // Keeps the call from being turned into a tail jump, which would let
    // callgrind see the closure run outside the region.
    std::hint::black_box(());
}

/// Invokes `function` with `params` `warmup` times uncounted, then
/// `invocations` times inside the counted region. The first failure is
/// returned with the function's message.
pub fn run_counted(
    function: &dyn Function,
    params: &Value,
    warmup: u64,
    invocations: u64,
) -> Result<(), String> {
    for _ in 0..warmup {
        let r = function.invoke(params).map_err(|e| e.to_string())?;
        drop(std::hint::black_box(r));
    }
    for _ in 0..invocations {
        let mut reply = None;
        slokit_counted_region(&mut || {
            reply = Some(function.invoke(std::hint::black_box(params)));
        });
        match reply {
            Some(Ok(r)) => drop(std::hint::black_box(r)),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the counted region did not run".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slokit_functions::spin::Spin;

    #[test]
    fn the_region_runs_every_invocation_and_reports_failures() {
        assert!(run_counted(&Spin, &serde_json::json!({"ms": 0.01}), 1, 2).is_ok());
        let e = run_counted(&Spin, &serde_json::json!({"ms": -1}), 0, 1).unwrap_err();
        assert!(e.contains("ms"), "{e}");
    }
}
