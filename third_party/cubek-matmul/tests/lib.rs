#![allow(unused, clippy::upper_case_acronyms)]

mod suite;
