# Build a ready-to-run cpppo-fleet lab host image (a Vagrant box) from Debian's own
# bookworm cloud image, provisioned by ../ansible/playbook.yml.
#
#   cd packer && packer init . && packer build -var 'source_image=/path/to/debian-12-genericcloud-amd64.qcow2' .
#
# The source image is a local file (download it yourself from Debian's cloud image service
# into this folder); nothing here names a mirror.
packer {
  required_plugins {
    qemu    = { version = ">= 1.1.0", source = "github.com/hashicorp/qemu" }
    ansible = { version = ">= 1.1.0", source = "github.com/hashicorp/ansible" }
    vagrant = { version = ">= 1.1.0", source = "github.com/hashicorp/vagrant" }
  }
}

variable "source_image" {
  type        = string
  description = "Path to a Debian 12 (bookworm) generic cloud qcow2 image"
}

variable "ssh_password" {
  type      = string
  default   = "cpppo-build"
  sensitive = true
}

source "qemu" "labhost" {
  iso_url          = var.source_image
  iso_checksum     = "none"
  disk_image       = true
  format           = "qcow2"
  disk_size        = "8G"
  memory           = 2048
  cpus             = 2
  headless         = true
  accelerator      = "kvm"
  ssh_username     = "debian"
  ssh_password     = var.ssh_password
  ssh_timeout      = "10m"
  cd_label         = "cidata"
  cd_content = {
    "meta-data" = "instance-id: cpppo-lab\nlocal-hostname: cpppo-lab\n"
    "user-data" = <<-EOT
      #cloud-config
      password: ${var.ssh_password}
      chpasswd: { expire: false }
      ssh_pwauth: true
    EOT
  }
  shutdown_command = "sudo shutdown -P now"
  output_directory = "output-labhost"
  vm_name          = "cpppo-fleet-labhost.qcow2"
}

build {
  sources = ["source.qemu.labhost"]

  provisioner "ansible" {
    playbook_file = "../ansible/playbook.yml"
    groups        = ["labhosts"]
    extra_arguments = [
      "--extra-vars", "cpppo_fleet_source=${path.root}/.. cpppo_fleet_service=true",
    ]
  }

  post-processor "vagrant" {
    output = "cpppo-fleet-labhost-{{.Provider}}.box"
  }
}
