"""The reference broker process: remoting front end, Raft-replicated application state, store."""
