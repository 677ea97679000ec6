//! An ordered parallel map: one producer, N workers, one consumer that sees
//! results in the order the producer made the jobs. Bounded in flight, so
//! memory stays flat whatever the disk size.

use crate::error::Result;
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};

/// Runs `work` over the jobs from `produce` on one thread per entry of
/// `states`, and hands the results to `consume` in job order. At most
/// `depth` jobs are in flight. The first error stops production and is
/// returned once the workers have drained.
pub(crate) fn run_ordered<T, U, S>(
    mut states: Vec<S>,
    depth: usize,
    mut produce: impl FnMut() -> Result<Option<T>>,
    work: impl Fn(&mut S, T) -> Result<U> + Sync,
    mut consume: impl FnMut(U) -> Result<()>,
) -> Result<()>
where
    T: Send,
    U: Send,
    S: Send,
{
    if states.len() <= 1 {
        let mut state = states.pop().expect("at least one worker state");
        while let Some(job) = produce()? {
            consume(work(&mut state, job)?)?;
        }
        return Ok(());
    }
    let depth = depth.max(states.len());
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, T)>(depth);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<(u64, Result<U>)>();
        for mut state in states.drain(..) {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let work = &work;
            scope.spawn(move || loop {
                // Hold the lock only to take a job, not while working on it.
                let next = job_rx.lock().map(|rx| rx.recv());
                let Ok(Ok((seq, job))) = next else { break };
                if done_tx.send((seq, work(&mut state, job))).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);

        let mut sent = 0u64;
        let mut next = 0u64;
        let mut finished = false;
        let mut produce_error = None;
        let mut waiting: BTreeMap<u64, Result<U>> = BTreeMap::new();
        loop {
            while !finished && sent - next < depth as u64 {
                match produce() {
                    Ok(Some(job)) => {
                        // Sending fails only if every worker panicked; the scope re-raises that.
                        if job_tx.send((sent, job)).is_err() {
                            finished = true;
                        }
                        sent += 1;
                    }
                    Ok(None) => finished = true,
                    Err(e) => {
                        produce_error = Some(e);
                        finished = true;
                    }
                }
            }
            if next == sent {
                break;
            }
            let Ok((seq, result)) = done_rx.recv() else {
                break;
            };
            waiting.insert(seq, result);
            // Results are consumed, and errors reported, in job order, so the
            // first bad block is the one named whatever thread found it.
            while let Some(result) = waiting.remove(&next) {
                next += 1;
                consume(result?)?;
            }
        }
        // Returning drops the job sender: idle workers stop, busy ones finish
        // their job, and the scope joins them.
        match produce_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}
