"""The audit service: who did what to which key, tamper-evident."""
