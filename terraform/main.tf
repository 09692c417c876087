# The VM lifecycle: per Lima VM, one terraform_data resource for the VM and one for its size.
#
# terraform_data is built into Terraform >= 1.4 (and OpenTofu), so this module
# needs no provider download. A VM is replaced only when what a new VM alone can
# change (image, arch, network, provisioning: spec_hash) changes; `inv vm.apply`
# refuses that without --yes, naming what is lost. cpus, memory and disk growth
# (size_hash) are changed in place: stop, `limactl edit`, start. Creating is
# idempotent: a VM whose create or start failed is tainted, Terraform runs no
# destroy provisioner for a tainted resource, so the next create finds it and
# only starts it. The toolkit reads the `vms` output to write the inventory.
# Values reach the shell only through environment variables, never spliced
# into the command text.

terraform {
  required_version = ">= 1.4"
}

variable "limactl" {
  description = "Path of the limactl binary."
  type        = string
  default     = "limactl"
}

variable "ready_timeout" {
  description = "Seconds a started VM may take until its provisioning has finished."
  type        = number
  default     = 600
}

locals {
  # `limactl start` of an instance an interrupted start left booting returns at once ("already
  # running"), so a VM counts as created or resized only once its provisioning script has finished
  # this boot: it touches /run/homelab-provisioned last (tasks/homelab/vm/lima.py).
  wait_provisioned = <<-EOT
    waited=0
    until "$LIMACTL" shell "$NAME" test -f /run/homelab-provisioned >/dev/null 2>&1; do
      [ "$waited" -lt "$READY_TIMEOUT" ] || { echo "$NAME: not provisioned after $READY_TIMEOUT s; see: limactl shell $NAME sudo tail /var/log/cloud-init-output.log" >&2; exit 1; }
      sleep 5 && waited=$((waited + 5))
    done
  EOT
}

variable "vms" {
  description = "VMs by name: rendered template path, its hash, and facts for the inventory."
  type = map(object({
    template     = string
    spec_hash    = string
    size_hash    = string
    ip           = string
    role         = string
    cpus         = number
    memory       = string
    disk         = string
    memory_gib   = string
    disk_gib     = string
    memory_bytes = string
    disk_bytes   = string
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
    command = <<-EOT
      { "$LIMACTL" list "$NAME" >/dev/null 2>&1 || "$LIMACTL" create --tty=false --name="$NAME" "$TEMPLATE"; } &&
      "$LIMACTL" start --tty=false "$NAME" || exit 1
      ${local.wait_provisioned}
    EOT
    environment = {
      LIMACTL       = var.limactl
      NAME          = each.key
      TEMPLATE      = each.value.template
      READY_TIMEOUT = var.ready_timeout
    }
  }

  # limactl 1.2's delete can fail after removing the instance, while it reads a sibling that another
  # delete removes at the same moment (seen destroying three VMs on user-v2); delete --force of a
  # missing instance succeeds, so a retry finishes the job instead of leaving it in the state.
  provisioner "local-exec" {
    when    = destroy
    command = "for try in 1 2 3; do \"$LIMACTL\" delete --force \"$NAME\" && exit 0; sleep 2; done; exit 1"
    environment = {
      LIMACTL = self.input.limactl
      NAME    = self.input.name
    }
  }
}

resource "terraform_data" "size" {
  for_each = var.vms

  triggers_replace = each.value.size_hash
  input            = { vm = terraform_data.vm[each.key].id } # after its own VM, and only that one

  provisioner "local-exec" {
    command = <<-EOT
      now=$("$LIMACTL" list --format='{{.Status}} {{.CPUs}} {{.Memory}} {{.Disk}}' "$NAME") || exit 1
      if [ "$${now#* }" != "$CPUS $MEMORY_BYTES $DISK_BYTES" ]; then
        # limactl stop refuses an instance that is not running (a VM stopped with inv vm.stop)
        if [ "$${now%% *}" = Running ]; then "$LIMACTL" stop "$NAME" || exit 1; fi
        "$LIMACTL" edit --tty=false --cpus="$CPUS" --memory="$MEMORY_GIB" --disk="$DISK_GIB" "$NAME" &&
        "$LIMACTL" start --tty=false "$NAME" || exit 1
      fi
      ${local.wait_provisioned}
    EOT
    environment = {
      LIMACTL       = var.limactl
      READY_TIMEOUT = var.ready_timeout
      NAME          = each.key
      CPUS          = each.value.cpus
      MEMORY_GIB    = each.value.memory_gib
      DISK_GIB      = each.value.disk_gib
      MEMORY_BYTES  = each.value.memory_bytes
      DISK_BYTES    = each.value.disk_bytes
    }
  }
}

output "vms" {
  description = "Every VM the module manages, with the facts the inventory needs."
  value       = { for name, vm in terraform_data.vm : name => vm.output }
}
