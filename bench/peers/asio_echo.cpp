// asio_echo - the echo server a Boost.Asio user writes (a peer of the benchmarks).
//
//   asio_echo [--host 127.0.0.1] [--port 7777]
//
// One thread running one io_context: async_accept, then per connection
// async_read_some into the session's own 1 KiB buffer and async_write of what
// came - the shape of Asio's own async_tcp_echo_server example. Sessions live
// in shared_ptrs captured by their handlers. SIGINT/SIGTERM stop it.
#include <boost/asio.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

using boost::asio::ip::tcp;

namespace {

class session : public std::enable_shared_from_this<session> {
public:
  explicit session(tcp::socket s) : socket_(std::move(s)) {}
  void start() { read(); }

private:
  void read() {
    auto self = shared_from_this();
    socket_.async_read_some(boost::asio::buffer(data_),
                            [this, self](boost::system::error_code ec, std::size_t n) {
                              if (!ec)
                                write(n);
                            });
  }
  void write(std::size_t n) {
    auto self = shared_from_this();
    boost::asio::async_write(socket_, boost::asio::buffer(data_, n),
                             [this, self](boost::system::error_code ec, std::size_t) {
                               if (!ec)
                                 read();
                             });
  }
  tcp::socket socket_;
  char data_[1024];
};

void accept(tcp::acceptor &a) {
  a.async_accept([&a](boost::system::error_code ec, tcp::socket s) {
    if (!ec) {
      s.set_option(tcp::no_delay(true));
      std::make_shared<session>(std::move(s))->start();
    }
    accept(a);
  });
}

} // namespace

int main(int argc, char **argv) {
  std::string host = "127.0.0.1";
  int port = 7777;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--host") && i + 1 < argc) {
      host = argv[++i];
    } else if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: asio_echo [--host H] [--port P]\n");
      return 2;
    }
  }
  if (port < 1 || port > 65535) {
    std::fprintf(stderr, "asio_echo: bad port %d\n", port);
    return 2;
  }
  try {
    boost::asio::io_context io(1);
    tcp::endpoint ep(boost::asio::ip::make_address(host), static_cast<unsigned short>(port));
    tcp::acceptor a(io);
    a.open(ep.protocol());
    a.set_option(tcp::acceptor::reuse_address(true));
    a.bind(ep);
    a.listen(4096);
    boost::asio::signal_set sigs(io, SIGINT, SIGTERM);
    sigs.async_wait([&io](boost::system::error_code, int) { io.stop(); });
    accept(a);
    std::fprintf(stderr, "asio_echo: listening on %s:%d, Boost %d.%d\n", host.c_str(), port,
                 BOOST_VERSION / 100000, BOOST_VERSION / 100 % 1000);
    io.run();
  } catch (const std::exception &e) {
    std::fprintf(stderr, "asio_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
