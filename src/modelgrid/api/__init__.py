"""HTTP edge: wire parsing, authentication, rendering and the one error table."""
