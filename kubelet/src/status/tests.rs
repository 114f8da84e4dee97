//! Status tests.
