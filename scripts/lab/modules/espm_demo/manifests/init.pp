# The demo's class: a node classified with it gets a file saying who classified it.
class espm_demo (
  String $message = 'Hello from espm',
  String $path = '/tmp/espm-demo.txt',
) {
  file { $path:
    ensure  => file,
    content => "${message}\n",
    mode    => '0644',
  }
}
