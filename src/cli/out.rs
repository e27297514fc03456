//! What commands print. A reader that goes away early (`annals entity … |
//! head`) ends the command quietly, as it ends any Unix tool, instead of
//! the panic `println!` gives: the exit status is 141 (128 + SIGPIPE), what
//! a shell reports for a tool the signal stopped.

use std::io::{self, Write};

/// `println!`, to stdout, ending the command quietly on a closed pipe.
macro_rules! out {
    () => {
        $crate::cli::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// The exit status of a command whose reader went away.
pub const CLOSED_PIPE_STATUS: i32 = 141;

pub fn write(text: std::fmt::Arguments) {
    let mut stdout = io::stdout().lock();
    if let Err(error) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if error.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(CLOSED_PIPE_STATUS);
        }
        eprintln!("error: cannot write the output: {error}");
        std::process::exit(1);
    }
}
