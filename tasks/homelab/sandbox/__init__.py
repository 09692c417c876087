"""sandbox.*: a real control plane on 127.0.0.1 with kwok nodes named like the config's."""
