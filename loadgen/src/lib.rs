//! slokit-loadgen: open-loop replay of arrival processes (constant, Poisson,
//! bursty) and real traces (Azure Functions 2019/2021, plain CSV) against
//! function endpoints, recording what every invocation experienced.
