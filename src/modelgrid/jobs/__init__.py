"""Background work with leases in the database: the batch runner, file retention."""
