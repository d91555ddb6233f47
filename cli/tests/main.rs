//! Process-level tests of the `relay` binary: it is started as a user would start it, with
//! local stand-ins for Mavera and Customer.io (and moto for `poll-sqs`), and judged by what
//! it answers, prints and sends.

mod check;
mod console;
mod data_dir;
mod doctor;
mod operate_aws;
mod operate_local;
mod poll_sqs;
mod send;
mod serve;
mod support;
