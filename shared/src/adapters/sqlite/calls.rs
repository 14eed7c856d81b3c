//! The database thread and its two lanes of calls (see [`super::SqliteDb`]).
//!
//! Hand-written rather than a channel crate's: the thread must take from two queues in order of
//! priority, waiting on both at once, which `std::sync::mpsc` cannot do; a mutex, two deques and
//! a condition variable do it in a few lines.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::Cached;

/// A group of queue steps' calls is closed after this long: the longer a group, the fewer times
/// the pages its calls share are written, and the longer its first call waits for its answer.
/// A group that has taken a request's call closes as soon as no other request's call is waiting,
/// so a request waits for one step's call at most, not for a group.
const GROUP_BUDGET: Duration = Duration::from_millis(4);

/// The WAL is copied back into the database file by a thread of its own, this often, so the
/// database thread does not stop for it (a twentieth of its time when it did). Each copy ends
/// with the files synced, which slows the database thread's own writes while it lasts: the less
/// there is to copy, the shorter that is. Measured at 500 orders/s offered (5,000-order runs),
/// intake p99: every 50 ms 3.6-4.9 ms, 100 ms 4.5-11.5, 400 ms 36, 1 s 97.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// Pages in the WAL past which the database thread checkpoints itself (SQLite's automatic
/// checkpoint): 128 MiB at 4 KiB pages.
///
/// The checkpoint thread copies the WAL back but cannot start it over: SQLite restarts the log
/// only when a write begins with every frame copied, and the database thread writes again
/// before the next copy ends. So the WAL grows until this backstop, and the commit that reaches
/// it checkpoints (little is left to copy) and syncs both files: 10 to 25 ms during which every
/// caller waits. At 4,096 pages that came 3 to 7 times a second under load; in the benchmark's
/// 500 orders/s phase it put intake p99 at 13 to 15 ms (p50 1 ms), 170 commits over 3 ms in a
/// 5,000-order run. At 32,768 pages: p99 8.2 ms, 36 such commits. A larger WAL costs disk, not
/// speed: the checkpoint thread keeps it copied.
pub(super) const BACKSTOP_CHECKPOINT_PAGES: i64 = 32_768;

/// Calls committed together at most.
const MAX_GROUP: usize = 512;

/// A call on the database thread: runs its closure (inside its savepoint) and returns what
/// answers the caller once the group's commit is known.
type Job = Box<dyn FnOnce(&mut Connection) -> Answer + Send>;
type Answer = Box<dyn FnOnce(Result<(), &Failed>) + Send>;

/// Why a call could not be answered with its own result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failed {
    /// Worth retrying: the call itself succeeded, the file could not take the group.
    #[error("committing the group of calls failed: {0}")]
    Commit(String),
    #[error("the database call panicked and was rolled back")]
    Panicked,
    #[error("the database thread has stopped")]
    Stopped,
}

impl Failed {
    fn of(e: &rusqlite::Error) -> Self {
        Failed::Commit(e.to_string())
    }
}

/// Group commits made by this process, for the benchmark's commits-per-order figure.
static GROUPS: AtomicU64 = AtomicU64::new(0);

/// How many group commits this process has made so far.
pub fn commits_so_far() -> u64 {
    GROUPS.load(Ordering::Relaxed)
}

tokio::task_local! {
    static ANSWERING: ();
}

/// Runs `f` (an HTTP connection, say) with its database calls ahead of the queue steps' calls.
pub async fn answering_requests<F: std::future::Future>(f: F) -> F::Output {
    ANSWERING.scope((), f).await
}

#[derive(Default)]
struct Lanes {
    requests: VecDeque<Job>,
    steps: VecDeque<Job>,
    closed: bool,
}

#[derive(Default)]
struct Queue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
}

impl Queue {
    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        // A job never runs under this lock, so a poisoned lock holds consistent deques.
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next call and whether it is a request's, waiting for one; `None` once closed and
    /// empty.
    fn next(&self) -> Option<(Job, bool)> {
        let mut lanes = self.lanes();
        loop {
            if let Some(job) = lanes.requests.pop_front() {
                return Some((job, true));
            }
            if let Some(job) = lanes.steps.pop_front() {
                return Some((job, false));
            }
            if lanes.closed {
                return None;
            }
            lanes = self.ready.wait(lanes).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A waiting call and whether it is a request's, if any: a request's always, a step's only
    /// if `steps_too`.
    fn waiting(&self, steps_too: bool) -> Option<(Job, bool)> {
        let mut lanes = self.lanes();
        if let Some(job) = lanes.requests.pop_front() {
            return Some((job, true));
        }
        if steps_too {
            return lanes.steps.pop_front().map(|job| (job, false));
        }
        None
    }
}

/// The callers' side: closes the queue when the last [`super::SqliteDb`] goes, and the thread
/// then finishes what is queued and closes the connection; the checkpoint thread stops too.
pub(super) struct Handle {
    queue: Arc<Queue>,
    checkpointer: std::thread::Thread,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.queue.lanes().closed = true;
        self.queue.ready.notify_one();
        self.checkpointer.unpark();
    }
}

/// Starts the database thread on `conn` and the checkpoint thread on `checkpoints` (a second
/// connection to the same file).
pub(super) fn start(conn: Connection, checkpoints: Connection) -> std::io::Result<Handle> {
    let queue = Arc::new(Queue::default());
    let theirs = Arc::clone(&queue);
    std::thread::Builder::new()
        .name("oms-sqlite".into())
        .spawn(move || run(conn, &theirs))?;
    let watched = Arc::downgrade(&queue);
    let checkpointer = std::thread::Builder::new()
        .name("oms-sqlite-checkpoint".into())
        .spawn(move || checkpoint(&checkpoints, &watched))?;
    Ok(Handle {
        queue,
        checkpointer: checkpointer.thread().clone(),
    })
}

/// The checkpoint thread: a passive checkpoint (it never waits for the writer, and the writer
/// never waits for it) every [`CHECKPOINT_EVERY`], until the database is closed.
fn checkpoint(conn: &Connection, queue: &std::sync::Weak<Queue>) {
    loop {
        std::thread::park_timeout(CHECKPOINT_EVERY);
        match queue.upgrade() {
            Some(q) if !q.lanes().closed => {}
            _ => return,
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "checkpoint failed; the next one tries again");
        }
    }
}

impl Handle {
    /// Runs `f` on the database thread in its own savepoint and answers once its group is
    /// committed. Waiting is async: a waiting caller holds no thread.
    pub(super) async fn call<T, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<rusqlite::Error> + From<Failed> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn: &mut Connection| {
            let out = in_savepoint(conn, f);
            Box::new(move |committed: Result<(), &Failed>| {
                let out = match committed {
                    Ok(()) => out,
                    Err(failed) => Err(E::from(failed.clone())),
                };
                // The caller may have gone (its request was dropped); the work stands.
                let _ = reply.send(out);
            })
        });
        let request = ANSWERING.try_with(|()| ()).is_ok();
        {
            let mut lanes = self.queue.lanes();
            if lanes.closed {
                return Err(E::from(Failed::Stopped));
            }
            if request {
                lanes.requests.push_back(job);
            } else {
                lanes.steps.push_back(job);
            }
        }
        self.queue.ready.notify_one();
        answer
            .await
            .unwrap_or_else(|_| Err(E::from(Failed::Stopped)))
    }
}

/// The database thread: one group after another until the queue is closed and empty.
fn run(mut conn: Connection, queue: &Queue) {
    while let Some((first, mut answering)) = queue.next() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "could not begin a transaction");
            first(&mut conn)(Err(&Failed::of(&e)));
            continue;
        }
        let started = Instant::now();
        let mut answers = Vec::with_capacity(16);
        answers.push(first(&mut conn));
        // Some errors (a full disk, an I/O error) make SQLite roll the whole transaction back:
        // then the group is over, and none of its calls is reported done.
        let mut lost = conn.is_autocommit();
        while !lost && answers.len() < MAX_GROUP {
            let steps_too = !answering && started.elapsed() < GROUP_BUDGET;
            let Some((call, request)) = queue.waiting(steps_too) else {
                break;
            };
            answering |= request;
            answers.push(call(&mut conn));
            lost = conn.is_autocommit();
        }
        let committed = if lost {
            tracing::error!(
                calls = answers.len(),
                "the group's transaction was rolled back by an error"
            );
            Err(Failed::Commit(
                "the transaction was rolled back by an error".into(),
            ))
        } else {
            conn.execute_batch("COMMIT").map_err(|e| {
                tracing::error!(error = %e, calls = answers.len(), "group commit failed; its calls are rolled back");
                let failed = Failed::of(&e);
                if !conn.is_autocommit()
                    && let Err(e) = conn.execute_batch("ROLLBACK")
                {
                    tracing::error!(error = %e, "rollback after a failed commit failed");
                }
                failed
            })
        };
        GROUPS.fetch_add(1, Ordering::Relaxed);
        for answer in answers {
            answer(committed.as_ref().map(|_| ()));
        }
    }
}

/// Runs `f` inside a savepoint named for the call, releasing it when `f` succeeds and rolling
/// back to it when `f` fails or panics, so a call's writes land whole or not at all.
fn in_savepoint<T, E>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<rusqlite::Error> + From<Failed>,
{
    conn.exec("SAVEPOINT call", [])?;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
        .unwrap_or_else(|_| Err(E::from(Failed::Panicked)));
    if out.is_err() {
        conn.exec("ROLLBACK TO call", [])?;
    }
    conn.exec("RELEASE call", [])?;
    out
}
