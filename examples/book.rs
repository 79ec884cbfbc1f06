//! Build the book as HTML, offline, with mdBook's own library (the one the book test uses),
//! and print the page to open. Reading `book/src/*.md` directly shows `{{#include ...}}`
//! lines where the code goes; the built book has the code in place.
//!
//!     cargo run --example book          # then open book/book/index.html in a browser

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("book");
    let built = mdbook_driver::MDBook::load(&root).and_then(|book| {
        let out = book.build_dir_for("html");
        book.build().map(|()| out)
    });
    match built {
        Ok(out) => {
            println!("the book is built: open {} in a browser", out.join("index.html").display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot build the book in {}: {error:#}", root.display());
            ExitCode::FAILURE
        }
    }
}
