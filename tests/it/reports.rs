//! placeholder; filled in by the report renderer work
