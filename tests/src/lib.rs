//! Test support for mavera-relay's black-box tests: local stand-ins for the SaaS APIs it
//! calls, and helpers that reach the local AWS endpoint (moto) through the real SDK.
pub mod cio_standin;
