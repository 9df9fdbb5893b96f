//! Renderers of a [`super::Report`] into the files of a run directory; filled in by the
//! report work.
