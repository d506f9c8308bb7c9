//! Two clocks for a webhook connection where hyper has one. Hyper's
//! `header_read_timeout` starts whenever a connection waits for a request
//! head, so one timer bounded both a head that trickles (slowloris: seconds)
//! and a kept connection resting between requests. Kept at 5 s it closed
//! idle connections long before common client pools drop them (hyper's and
//! Go's keep them 90 s), and a client posting on one at the moment ingest
//! closed it got a connection error instead of an answer; WA Bridges never
//! retries, so that event was lost on the provider's side.
//!
//! So hyper's timer becomes the idle bound (`SWITCHYARD_HTTP_IDLE_TIMEOUT`),
//! and this module keeps the head bound (`SWITCHYARD_HTTP_HEADER_TIMEOUT`):
//! [`HeadClockIo`] wraps the connection's socket and starts the head's clock
//! when a new connection is accepted and when the first byte arrives after an
//! answer; [`HeadClock::request`] stops it when hyper hands the parsed head
//! to the service, and the answer's end makes the connection rest again.
//! Past the deadline a read fails with `TimedOut` and hyper closes the
//! connection, as its own timer did. Written by hand: hyper has one head
//! timer, and no kept crate splits it.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

const RESTING: u8 = 0;
const HEAD: u8 = 1;
const REQUEST: u8 = 2;

/// Where a connection is between requests, shared by its socket wrapper and
/// its service.
#[derive(Debug)]
pub struct HeadClock {
    state: AtomicU8,
}

impl HeadClock {
    /// A new connection: its first head is already due.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: AtomicU8::new(HEAD),
        })
    }

    /// Hyper parsed a head and calls the service: no head is due.
    pub fn request(&self) {
        self.state.store(REQUEST, Ordering::SeqCst);
    }

    /// The answer is complete: the connection rests until its next byte.
    pub fn answered(&self) {
        self.state.store(RESTING, Ordering::SeqCst);
    }
}

/// The connection's socket, failing its reads once a head is overdue.
pub struct HeadClockIo<T> {
    inner: T,
    clock: Arc<HeadClock>,
    head_timeout: Duration,
    /// The head's deadline while one is due.
    deadline: Pin<Box<Sleep>>,
}

impl<T> HeadClockIo<T> {
    /// Wraps a just-accepted connection; its first head is due within `head_timeout`.
    pub fn new(inner: T, clock: Arc<HeadClock>, head_timeout: Duration) -> Self {
        Self {
            inner,
            clock,
            head_timeout,
            deadline: Box::pin(tokio::time::sleep(head_timeout)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadClockIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                // A first byte after an answer: a new head is due. (Bytes
                // read during a request are its body, or a pipelined head
                // that hyper parses once the answer is out.)
                if buf.filled().len() > before
                    && this
                        .clock
                        .state
                        .compare_exchange(RESTING, HEAD, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    this.deadline
                        .as_mut()
                        .reset(Instant::now() + this.head_timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.clock.state.load(Ordering::SeqCst) == HEAD
                    && this.deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not received within SWITCHYARD_HTTP_HEADER_TIMEOUT",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadClockIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}
