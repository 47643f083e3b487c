//! slokit-profiler: runs a function many times on a pinned, isolated CPU,
//! derives its deadline (the SLO "X % of invocations finish within D") and
//! stores it as a profile; the regression gate re-profiles and compares.
