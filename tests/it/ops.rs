//! placeholder; filled in by the ops test work
