# The VM lifecycle: one terraform_data resource per Lima VM.
#
# terraform_data is built into Terraform >= 1.4 (and OpenTofu), so this module
# needs no provider download. A VM is replaced when the hash of its rendered
# Lima template changes; the toolkit reads the `vms` output to write the
# inventory that later layers use. Values reach the shell only through
# environment variables, never spliced into the command text.

terraform {
  required_version = ">= 1.4"
}

variable "limactl" {
  description = "Path of the limactl binary."
  type        = string
  default     = "limactl"
}

variable "vms" {
  description = "VMs by name: rendered template path, its hash, and facts for the inventory."
  type = map(object({
    template  = string
    spec_hash = string
    ip        = string
    role      = string
    cpus      = number
    memory    = string
    disk      = string
  }))
}

resource "terraform_data" "vm" {
  for_each = var.vms

  triggers_replace = each.value.spec_hash

  input = {
    name    = each.key
    limactl = var.limactl
    ip      = each.value.ip
    role    = each.value.role
    cpus    = each.value.cpus
    memory  = each.value.memory
    disk    = each.value.disk
  }

  provisioner "local-exec" {
    command = "\"$LIMACTL\" create --tty=false --name=\"$NAME\" \"$TEMPLATE\" && \"$LIMACTL\" start --tty=false \"$NAME\""
    environment = {
      LIMACTL  = var.limactl
      NAME     = each.key
      TEMPLATE = each.value.template
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = "\"$LIMACTL\" delete --force \"$NAME\""
    environment = {
      LIMACTL = self.input.limactl
      NAME    = self.input.name
    }
  }
}

output "vms" {
  description = "Every VM the module manages, with the facts the inventory needs."
  value       = { for name, vm in terraform_data.vm : name => vm.output }
}
