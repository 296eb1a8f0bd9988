//! Guards through the real HTTP stack (issue #6).
