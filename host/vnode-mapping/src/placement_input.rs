//! (being written; see crate docs)
