//! placeholder; filled in by the fuzz test work
