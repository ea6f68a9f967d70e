//! `afx dataset`: build the demo corpus, and check a corpus folder the way training will read it.

use std::path::PathBuf;

use afx_datasets::{Corpus, Manifest, Split};

#[derive(clap::Subcommand)]
pub enum Dataset {
    /// Build the demo corpus (Debian's sonic-pi-samples recordings + espeak-ng speech) with a manifest
    BuildDemo {
        /// Folder to write (created if needed)
        #[arg(long)]
        out: PathBuf,
    },
    /// Decode every file of a corpus folder and report each split (files, duration, files that fail)
    Check {
        /// The corpus folder (audio files, optional manifest.json)
        data: PathBuf,
        /// Rate the files are resampled to
        #[arg(long, default_value_t = 22_050)]
        sample_rate: u32,
    },
}

pub fn run(command: Dataset) -> anyhow::Result<()> {
    match command {
        Dataset::BuildDemo { out } => {
            let manifest = afx_datasets::demo::build(&out)?;
            for split in [Split::Train, Split::Val, Split::Test] {
                let n = manifest.files.iter().filter(|f| f.split == split).count();
                println!("{split}: {n} files");
            }
            println!("wrote {}", out.join(afx_datasets::corpus::MANIFEST).display());
            Ok(())
        }
        Dataset::Check { data, sample_rate } => {
            let manifest = Manifest::for_folder(&data)?;
            println!("{}: {} audio files", data.display(), manifest.files.len());
            let mut usable = 0;
            for split in [Split::Train, Split::Val, Split::Test] {
                match Corpus::open(&data, split, sample_rate) {
                    Ok(corpus) => {
                        let seconds: f64 =
                            corpus.clips().iter().map(|(_, a)| a.frames() as f64 / f64::from(sample_rate)).sum();
                        println!("{split}: {} files, {seconds:.1} s", corpus.len());
                        for skipped in corpus.skipped() {
                            println!("  skipped: {skipped}");
                        }
                        usable += corpus.len();
                    }
                    Err(e) => println!("{split}: {e}"),
                }
            }
            anyhow::ensure!(usable > 0, "{} holds no usable audio", data.display());
            Ok(())
        }
    }
}
