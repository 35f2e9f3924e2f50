use clap::Parser;

fn main() {
    let cli = drpipe::cli::args::Cli::parse();
    std::process::exit(drpipe::cli::dispatch(cli));
}
