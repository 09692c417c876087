"""host.*: the machine under the VMs: started at boot in order, its settings checked, the nodes sized for it."""
