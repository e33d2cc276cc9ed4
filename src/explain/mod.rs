//! Explaining the desired state: `trace` walks a packet through it hop by hop (and checks
//! the walk against the kernel with `--live`), `topology` draws it.

mod compare;
mod hop;
pub mod live;
mod place;
mod route;
pub mod rulematch;
pub mod topology;
pub mod trace;

#[cfg(test)]
mod down_tests;
#[cfg(test)]
mod tests;
