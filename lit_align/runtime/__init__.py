"""Runtime machinery: callbacks, atomic checkpoints, pre-emption, sharding and reductions over processes."""
