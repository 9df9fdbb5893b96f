//! placeholder; filled in by the jobs test work
