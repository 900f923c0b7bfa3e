//! The event stream of `xwan events`: every change of an uplink's state,
//! published by the health layer and written as JSON lines to each
//! subscribed control connection.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use super::protocol::Event;

/// The most subscriptions at once.
const MAX_SUBSCRIBERS: usize = 64;

/// Where state changes are published.
#[derive(Debug, Default)]
pub struct EventBus {
    subscribers: Mutex<Vec<Sender<Event>>>,
}

impl EventBus {
    /// A new subscription; None when [`MAX_SUBSCRIBERS`] are subscribed.
    pub fn subscribe(&self) -> Option<Receiver<Event>> {
        let mut subscribers = self.lock();
        if subscribers.len() >= MAX_SUBSCRIBERS {
            return None;
        }
        let (tx, rx) = channel();
        subscribers.push(tx);
        Some(rx)
    }

    /// Sends `event` to every subscriber, forgetting those that went away.
    pub fn publish(&self, event: &Event) {
        self.lock().retain(|tx| tx.send(event.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sender<Event>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
