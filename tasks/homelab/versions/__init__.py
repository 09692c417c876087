"""versions.*: resolve every upstream source the homelab pulls from, the way its client would."""
