"""vm.*: Lima VMs whose lifecycle Terraform drives."""
