# A ready-to-run cpppo-fleet lab host image, provisioned by ../ansible/playbook.yml (the labhost
# role), for Debian's packer 1.6.6: built-in builders, provisioners and post-processors only,
# nothing for `packer init` to download.
#
# docker: a lab-host image from the local images (images/build-base.sh, images/labhost): the
# container runs systemd and sshd on a docker network of yours at a fixed address, and Ansible
# reaches it over SSH, as it reaches real lab hosts.  The image boots the fleet under systemd:
#
#   docker network create --subnet 10.42.0.0/24 lab
#   ssh-keygen -t ed25519 -N '' -f lab-key
#   packer build -only=docker.labhost -var network=lab -var address=10.42.0.10 \
#       -var ssh_key=$PWD/lab-key -var fleet_file=$PWD/my-plant.toml packer/cpppo-fleet.pkr.hcl
#   docker run -d --cap-add SYS_ADMIN --cap-add NET_ADMIN --tmpfs /run --tmpfs /run/lock \
#       -v /sys/fs/cgroup:/sys/fs/cgroup:ro --network lab cpppo-fleet/labhost-built:latest
#
# qemu: a VM disk (qcow2) from a disk built offline (images/build-vm-disk.sh: mmdebstrap), and
# a Vagrant box of it for vagrant-libvirt:
#
#   packer build -only=qemu.labhost -var vm_dir=.cache/vm -var ssh_key=... packer/cpppo-fleet.pkr.hcl

variable "source_root" {
  type        = string
  default     = ""
  description = "The cpppo-fleet source tree (default: this template's parent folder)"
}

variable "fleet_file" {
  type        = string
  default     = ""
  description = "The fleet file the image runs (default: the source tree's fleet.toml)"
}

variable "build_dir" {
  type        = string
  default     = ""
  description = "Where the control machine caches the wheelhouse (default: the role's)"
}

variable "controller_python" {
  type        = string
  default     = "python3"
  description = "The Python that builds the wheelhouse (needs pip and a package index)"
}

variable "ansible_playbook" {
  type    = string
  default = "ansible-playbook"
}

variable "ssh_key" {
  type        = string
  description = "A private key (with KEY.pub beside it) Ansible logs in with during the build"
}

variable "up_timeout" {
  type        = number
  default     = 120
  description = "Seconds the service's `cpppo-fleet up` waits for every device at boot (slow hosts: more)"
}

variable "role_vars" {
  type        = string
  default     = "{}"
  description = "More variables for the role, as JSON (given last: they win); fleet.labimage passes [vagrant] vars"
}

variable "stamp" {
  type        = string
  default     = "none"
  description = "A digest of the build's inputs, kept as the image's label cpppo-fleet.stamp (fleet.labimage)"
}

variable "interface" {
  type        = string
  default     = ""
  description = "The interface of the fleet's aliases (fleet.toml: addressing = \"alias\")"
}

# --- docker --------------------------------------------------------------------------------------
variable "docker_image" {
  type    = string
  default = "cpppo-fleet/labhost:bookworm"
}

variable "network" {
  type        = string
  default     = "bridge"
  description = "The docker network of the build container (a user-defined one for a fixed address)"
}

variable "address" {
  type        = string
  default     = ""
  description = "The build container's fixed address on that network (Ansible's SSH target)"
}

variable "repository" {
  type    = string
  default = "cpppo-fleet/labhost-built"
}

variable "tag" {
  type    = string
  default = "latest"
}

# --- qemu ----------------------------------------------------------------------------------------
variable "vm_dir" {
  type        = string
  default     = ".cache/vm"
  description = "Folder of the offline-built disk: disk.qcow2, vmlinuz, initrd.img"
}

variable "accelerator" {
  type        = string
  default     = "tcg"
  description = "kvm where KVM can boot a guest (tests/lab_vm.py: kvm_boots), tcg otherwise"
}

variable "docker" {
  type        = bool
  default     = false
  description = "A Docker engine on the host and the device image loaded (fleet.toml: backend = \"docker\")"
}

variable "output_directory" {
  type    = string
  default = "output-labhost"
}

locals {
  root      = var.source_root != "" ? var.source_root : "${path.root}/.."
  fleet     = var.fleet_file != "" ? var.fleet_file : "${local.root}/fleet.toml"
  build_dir = var.build_dir != "" ? "cpppo_fleet_build_dir=${var.build_dir}" : ""
  # the image starts the fleet at boot, not during the build
  role_vars = [
    "--extra-vars", "cpppo_fleet_source=${local.root} cpppo_fleet_fleet_file=${local.fleet} cpppo_fleet_start=false",
    "--extra-vars", "cpppo_fleet_controller_python=${var.controller_python} cpppo_fleet_interface=${var.interface} ${local.build_dir}",
    "--extra-vars", "{\"cpppo_fleet_docker\": ${var.docker}, \"cpppo_fleet_up_timeout\": ${var.up_timeout}}",
    "--extra-vars", "ansible_ssh_private_key_file=${var.ssh_key}",
    "--extra-vars", var.role_vars,
  ]
}

source "docker" "labhost" {
  image  = var.docker_image
  pull   = false
  commit = true
  # systemd as PID 1 without --privileged; NET_ADMIN for alias addressing
  run_command = [
    "-d", "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", "--network", var.network, "--ip", var.address,
    "--label", "cpppo-fleet.packer=labhost", "{{.Image}}", "/sbin/init",
  ]
  changes = [
    "ENV container=docker",
    "CMD [\"/sbin/init\"]",
    "LABEL cpppo-fleet.image=labhost",
    "LABEL cpppo-fleet.stamp=${var.stamp}",
  ]
}

source "qemu" "labhost" {
  iso_url          = "${var.vm_dir}/disk.qcow2"
  iso_checksum     = "none"
  disk_image       = true
  use_backing_file = false
  skip_resize_disk = true
  format           = "qcow2"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  accelerator      = var.accelerator
  headless         = true
  memory           = 1024
  cpus             = 2
  # the disk has no boot loader: the kernel is booted directly (as vagrant-libvirt boots the box)
  qemuargs = [
    ["-kernel", "${var.vm_dir}/vmlinuz"],
    ["-initrd", "${var.vm_dir}/initrd.img"],
    ["-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 ip=10.0.2.15::10.0.2.2:255.255.255.0:cpppo-lab:eth0:none"],
    ["-serial", "file:${var.output_directory}-serial.log"],
    ["-cpu", "max"],
    # slirp with only packer's SSH forward on loopback: the guest reaches nothing outside
    ["-netdev", "user,id=user.0,restrict=on,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
    ["-device", "virtio-net,netdev=user.0"],
  ]
  boot_wait            = "5s"
  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_key
  ssh_timeout          = "10m"
  shutdown_command     = "systemctl poweroff"
  output_directory     = var.output_directory
  vm_name              = "labhost.qcow2"
}

build {
  sources = ["source.docker.labhost", "source.qemu.labhost"]

  # docker: let Ansible in over SSH (the qemu disk has the key already), once systemd is up
  provisioner "shell" {
    only          = ["docker.labhost"]
    remote_folder = "/root" # systemd empties /tmp as it boots
    inline = [
      "install -d -m 700 /root/.ssh",
      "echo '${file("${var.ssh_key}.pub")}' > /root/.ssh/authorized_keys",
      "chmod 600 /root/.ssh/authorized_keys",
      "for i in $(seq 1 60); do systemctl is-active --quiet ssh && break; sleep 1; done",
    ]
  }

  # docker: Ansible logs in over SSH at the container's fixed address (the docker communicator
  # has no SSH of its own); qemu: at the address of packer's SSH communicator.
  provisioner "ansible" {
    only          = ["docker.labhost"]
    playbook_file = "${path.root}/../ansible/playbook.yml"
    command       = var.ansible_playbook
    groups        = ["labhosts"]
    user          = "root"
    use_proxy     = false
    # packer's fallback proxy (no SSH communicator) is not used, but without this key it would
    # generate one and hand Ansible that instead of ours
    ssh_authorized_key_file = "${var.ssh_key}.pub"
    ansible_env_vars        = ["ANSIBLE_CONFIG=${path.root}/../ansible/ansible.cfg"]
    extra_arguments         = concat(local.role_vars, ["--extra-vars", "ansible_host=${var.address} ansible_port=22"])
  }

  provisioner "ansible" {
    only             = ["qemu.labhost"]
    playbook_file    = "${path.root}/../ansible/playbook.yml"
    command          = var.ansible_playbook
    groups           = ["labhosts"]
    user             = "root"
    use_proxy        = false
    ansible_env_vars = ["ANSIBLE_CONFIG=${path.root}/../ansible/ansible.cfg"]
    extra_arguments  = local.role_vars
  }

  # the build's key does not stay in the image
  provisioner "shell" {
    only          = ["docker.labhost"]
    remote_folder = "/root"
    inline        = ["rm -f /root/.ssh/authorized_keys"]
  }

  post-processor "docker-tag" {
    only       = ["docker.labhost"]
    repository = var.repository
    tags       = [var.tag]
  }

  post-processor "vagrant" {
    only                = ["qemu.labhost"]
    output              = "${var.output_directory}/cpppo-fleet-labhost-{{.Provider}}.box"
    keep_input_artifact = true
    compression_level   = 1 # the disk is most of it: fast beats small here
  }
}
