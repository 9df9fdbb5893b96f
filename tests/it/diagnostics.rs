//! placeholder; filled in by the diagnostics test work
