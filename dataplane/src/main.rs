//! esprit-dataplane: wired together in the dataplane issue.
fn main() {}
