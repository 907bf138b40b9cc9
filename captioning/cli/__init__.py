"""Every command of ``captioning`` (the top layer: nothing else imports these modules)."""
