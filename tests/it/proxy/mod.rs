//! A real sandgate on loopback (in process, or the binary as a child) in front of the scripted
//! upstream.

mod binary;
mod context;
mod edge_limits;
mod faults;
mod mode_off;
mod recorded;
mod restore_trust;
mod routes;
mod stream_faults;
mod tls;
mod tools;
