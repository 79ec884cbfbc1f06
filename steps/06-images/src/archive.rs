//! `save` and `load`: images as one tar file (being written).
